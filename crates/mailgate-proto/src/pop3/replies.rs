//! The fixed replies mailgate gives as a POP3 server before login, and the CAPA list.
//!
//! Every text here is constant: no reply ever echoes client input (design.md §7). Response
//! codes follow RFC 2449 (`RESP-CODES`), RFC 3206 (`[AUTH]`, `[SYS/TEMP]`) and RFC 5034
//! (`AUTH-RESP-CODE`). Wording follows Dovecot where clients are known to match on it.

/// Reply to USER (Dovecot also answers a bare `+OK`).
pub(crate) const USER_OK: &[u8] = b"+OK\r\n";
/// Reply to QUIT before login.
pub(crate) const QUIT_OK: &[u8] = b"+OK Logging out.\r\n";
/// Reply to STLS before the handshake (RFC 2595 §4).
pub(crate) const STLS_OK: &[u8] = b"+OK Begin TLS negotiation now.\r\n";
/// Empty SASL challenge (RFC 5034 §4: `+ ` followed by base64, here empty).
pub(crate) const SASL_EMPTY_CHALLENGE: &[u8] = b"+ \r\n";
/// SASL LOGIN `Username:` challenge.
pub(crate) const SASL_LOGIN_USER: &[u8] = b"+ VXNlcm5hbWU6\r\n";
/// SASL LOGIN `Password:` challenge.
pub(crate) const SASL_LOGIN_PASS: &[u8] = b"+ UGFzc3dvcmQ6\r\n";

/// `*` sent as a SASL response (RFC 5034 §4).
pub(crate) const ERR_SASL_CANCELLED: &[u8] = b"-ERR Authentication aborted by client.\r\n";
/// A SASL response that is not base64 or has the wrong shape.
pub(crate) const ERR_SASL_INVALID: &[u8] = b"-ERR Invalid SASL response.\r\n";
/// AUTH with a mechanism mailgate does not offer.
pub(crate) const ERR_SASL_MECH: &[u8] = b"-ERR Unsupported authentication mechanism.\r\n";
/// Wrong password, unknown user, unknown domain: what Dovecot says (RFC 3206 `[AUTH]`).
pub(crate) const ERR_AUTH_FAILED: &[u8] = b"-ERR [AUTH] Authentication failed.\r\n";
/// USER/PASS/AUTH while TLS is required and not active (RFC 2595 §4, RFC 3206 `[AUTH]`).
pub(crate) const ERR_TLS_REQUIRED: &[u8] =
    b"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections; use STLS.\r\n";
/// PASS before USER (RFC 1939 §7).
pub(crate) const ERR_NO_USER: &[u8] = b"-ERR No username given.\r\n";
/// A user name that is empty, too long, not UTF-8 or has control characters.
pub(crate) const ERR_BAD_USER: &[u8] = b"-ERR Invalid user name.\r\n";
/// A known command with wrong arguments.
pub(crate) const ERR_SYNTAX: &[u8] = b"-ERR Syntax error.\r\n";
/// APOP: mailgate never sends a timestamp, so APOP cannot work (RFC 1939 §7).
pub(crate) const ERR_APOP: &[u8] = b"-ERR APOP is not supported.\r\n";
/// A TRANSACTION-state command before login (RFC 1939 §5).
pub(crate) const ERR_NOT_LOGGED_IN: &[u8] = b"-ERR Not logged in.\r\n";
/// Anything else.
pub(crate) const ERR_UNKNOWN: &[u8] = b"-ERR Unknown command.\r\n";
/// STLS when TLS is already active.
pub(crate) const ERR_TLS_ACTIVE: &[u8] = b"-ERR TLS is already active.\r\n";
/// STLS without a certificate configured.
pub(crate) const ERR_TLS_UNAVAILABLE: &[u8] = b"-ERR STLS is not available.\r\n";
/// A line over the limit (RFC 2449 §4: 255 octets); the connection is closed.
pub(crate) const ERR_LINE_TOO_LONG: &[u8] = b"-ERR Line too long, closing connection.\r\n";
/// A NUL byte in a command line; the connection is closed.
pub(crate) const ERR_PROTOCOL: &[u8] = b"-ERR Protocol violation, closing connection.\r\n";
/// mailgate is shutting down (RFC 3206 `[SYS/TEMP]`: try again later).
pub(crate) const SHUTDOWN: &[u8] = b"-ERR [SYS/TEMP] Server shutting down, try again later.\r\n";
/// The pre-auth deadline expired (RFC 1939 §3 autologout timer).
pub(crate) const TIMEOUT: &[u8] = b"-ERR Disconnected for inactivity (autologout).\r\n";

/// Commands that exist only in the TRANSACTION state (RFC 1939 §5, RFC 2449).
pub(crate) const TRANSACTION_VERBS: &[&[u8]] = &[
    b"STAT", b"LIST", b"RETR", b"DELE", b"NOOP", b"RSET", b"TOP", b"UIDL", b"LAST",
];

/// Longest free text mailgate puts on one reply line (RFC 2449 §4: 512 octets per line).
pub(crate) const MAX_TEXT: usize = 400;

/// Make `text` safe for one reply line: control characters become spaces, and the result
/// is at most `max` bytes. `<` and `>` are replaced as well, so no text can look like an
/// APOP timestamp (RFC 1939 §7).
pub(crate) fn sanitize(text: &[u8], max: usize) -> Vec<u8> {
    let mut out: Vec<u8> = text
        .iter()
        .take(max)
        .map(|b| match b {
            0..=0x1f | 0x7f => b' ',
            b'<' => b'(',
            b'>' => b')',
            other => *other,
        })
        .collect();
    while out.last() == Some(&b' ') {
        out.pop();
    }
    out
}

/// `prefix text\r\n` with `text` sanitized.
pub(crate) fn line(prefix: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(&sanitize(text, MAX_TEXT));
    out.extend_from_slice(b"\r\n");
    out
}

/// The multi-line CAPA response (RFC 2449 §5); `mechanisms` are the SASL mechanisms
/// offered (the `SASL` line is left out when there are none).
pub(crate) fn capa(login_allowed: bool, offer_stls: bool, mechanisms: &[&str]) -> Vec<u8> {
    let mut out = b"+OK Capability list follows\r\n".to_vec();
    if login_allowed {
        out.extend_from_slice(b"USER\r\n");
        if !mechanisms.is_empty() {
            out.extend_from_slice(b"SASL");
            for m in mechanisms {
                out.push(b' ');
                out.extend_from_slice(m.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    if offer_stls {
        out.extend_from_slice(b"STLS\r\n");
    }
    out.extend_from_slice(
        b"RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION mailgate\r\n.\r\n",
    );
    out
}

/// The mechanism list for `AUTH` without arguments (common practice, Dovecot does it).
pub(crate) fn auth_list(mechanisms: &[&str]) -> Vec<u8> {
    let mut out = b"+OK\r\n".to_vec();
    for m in mechanisms {
        out.extend_from_slice(m.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capa_lists_the_offered_mechanisms() {
        let c = capa(true, false, &["PLAIN", "LOGIN"]);
        assert!(c.windows(18).any(|w| w == b"SASL PLAIN LOGIN\r\n"));
        let none = capa(true, true, &[]);
        assert!(!none.windows(4).any(|w| w == b"SASL"));
        assert!(none.windows(6).any(|w| w == b"USER\r\n"));
        assert_eq!(auth_list(&["PLAIN"]), b"+OK\r\nPLAIN\r\n.\r\n");
    }

    #[test]
    fn sanitize_strips_controls_and_timestamps() {
        assert_eq!(sanitize(b"a\r\nb\0c", 100), b"a  b c");
        assert_eq!(sanitize(b"<1.2@x>", 100), b"(1.2@x)");
        assert_eq!(sanitize(b"abcdef", 3), b"abc");
        assert_eq!(
            line(b"-ERR [SYS/TEMP] ", b"down\r\n"),
            b"-ERR [SYS/TEMP] down\r\n"
        );
    }
}
