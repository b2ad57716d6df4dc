//! Pre-auth limits (design.md §7). Every engine holds at most these many bytes.

/// Limits applied by the front engines. Defaults follow design.md §7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest IMAP command line (without literals), CRLF included, for every command but
    /// the two below.
    pub max_line: usize,
    /// Longest `AUTHENTICATE` line and SASL response line (IMAP), and POP3 `AUTH` line with
    /// its initial response: OAuth tokens (JWTs) of several KB travel in one line.
    pub max_sasl_line: usize,
    /// Longest `ID` command line: RFC 2971 allows 30 pairs of 30-octet names and
    /// 1024-octet values, about 32 KB.
    pub max_id_line: usize,
    /// Largest literal accepted before login.
    pub max_literal: usize,
    /// Bad commands tolerated before `BYE` and close (the 3rd bad command closes).
    pub max_bad_commands: u32,
    /// Longest IMAP tag.
    pub max_tag_len: usize,
    /// Most field/value pairs in an `ID` command.
    pub max_id_pairs: usize,
    /// Longest `ID` field name or value.
    pub max_id_field: usize,
    /// Longest POP3 command line, CRLF included (RFC 2449: 255).
    pub pop3_max_line: usize,
    /// Longest POP3 SASL continuation line.
    pub pop3_max_sasl_line: usize,
    /// Longest line accepted from a backend during the login relay.
    pub upstream_max_line: usize,
    /// Most untagged lines accepted from a backend during the login relay.
    pub upstream_max_untagged: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8 * 1024,
            max_sasl_line: 16 * 1024,
            max_id_line: 36 * 1024,
            max_literal: 4 * 1024,
            max_bad_commands: 3,
            max_tag_len: 64,
            max_id_pairs: 30,
            max_id_field: 1024,
            pop3_max_line: 255,
            pop3_max_sasl_line: 16 * 1024,
            upstream_max_line: 64 * 1024,
            upstream_max_untagged: 64,
        }
    }
}
