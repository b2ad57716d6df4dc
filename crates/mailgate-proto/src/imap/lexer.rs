//! Byte-level IMAP syntax (RFC 3501 §9 / RFC 9051 §9) for the pre-auth subset: tags, atoms,
//! quoted strings, literals, `NIL`, and the quoting rules the upstream encoder needs.
//!
//! The lexer works on one complete, already framed command (literal data inline after its
//! `{n}\r\n`), so it never needs more bytes; every failure is a plain [`Syntax`] error that
//! carries no input.

/// A command does not follow the grammar (never carries the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax;

/// `ATOM-CHAR`: any CHAR except atom-specials `( ) { SP CTL % * " \ ]`.
pub(crate) fn is_atom_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
        && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// `ASTRING-CHAR`: `ATOM-CHAR` or `]`.
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// `tag = 1*<any ASTRING-CHAR except "+">`, bounded by `max_len`.
pub(crate) fn valid_tag(tag: &[u8], max_len: usize) -> bool {
    !tag.is_empty() && tag.len() <= max_len && tag.iter().all(|&b| is_astring_char(b) && b != b'+')
}

/// Parse the digits of a literal announcement, saturating instead of overflowing.
pub(crate) fn literal_size(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// A literal announced at the end of a line (`... {n}` or `... {n+}`), CRLF stripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Announced {
    /// Announced size (saturated at `u64::MAX`).
    pub size: u64,
    /// `{n+}`: the client does not wait for `+`.
    pub non_sync: bool,
}

/// If `line` (without its line ending) ends with a literal announcement, return it.
pub(crate) fn announced_literal(line: &[u8]) -> Option<Announced> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let spec = &inner[open + 1..];
    let (digits, non_sync) = match spec.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (spec, false),
    };
    Some(Announced {
        size: literal_size(digits)?,
        non_sync,
    })
}

/// Strip a trailing `\r\n` or `\n`.
pub(crate) fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A cursor over one framed command. `Debug` shows the position, never the input.
pub(crate) struct Lexer<'a> {
    input: &'a [u8],
    pos: usize,
}

impl std::fmt::Debug for Lexer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lexer")
            .field("input", &crate::redact::Len::of(self.input))
            .field("pos", &self.pos)
            .finish()
    }
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Lexer { input, pos: 0 }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }

    /// Exactly one byte `b`.
    pub(crate) fn byte(&mut self, b: u8) -> Result<(), Syntax> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Syntax)
        }
    }

    /// One SP.
    pub(crate) fn sp(&mut self) -> Result<(), Syntax> {
        self.byte(b' ')
    }

    /// The end of the command: CRLF (RFC 3501 §2.2; a bare LF is refused) and nothing
    /// after it.
    pub(crate) fn eol(&mut self) -> Result<(), Syntax> {
        self.byte(b'\r')?;
        self.byte(b'\n')?;
        if self.pos == self.input.len() {
            Ok(())
        } else {
            Err(Syntax)
        }
    }

    /// True if the command ends here.
    pub(crate) fn at_eol(&self) -> bool {
        matches!(self.peek(), Some(b'\r' | b'\n'))
    }

    /// Bytes up to the first SP or line end (the tag, unvalidated).
    pub(crate) fn word(&mut self) -> &'a [u8] {
        self.take_while(|b| !matches!(b, b' ' | b'\r' | b'\n'))
    }

    /// `atom = 1*ATOM-CHAR`.
    pub(crate) fn atom(&mut self) -> Result<&'a [u8], Syntax> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() { Err(Syntax) } else { Ok(a) }
    }

    /// `astring = 1*ASTRING-CHAR / string`, as LOGIN's arguments are read: `*` and `%`
    /// (list-wildcards, atom-specials in RFC 3501) are accepted in the atom form, as Dovecot
    /// and Cyrus accept them, because clients send Dovecot's master-user form `user*master`
    /// unquoted (Python's imaplib does).
    pub(crate) fn astring(&mut self) -> Result<Vec<u8>, Syntax> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let a = self.take_while(|b| is_astring_char(b) || b == b'*' || b == b'%');
                if a.is_empty() {
                    Err(Syntax)
                } else {
                    Ok(a.to_vec())
                }
            }
        }
    }

    /// `nstring = string / NIL`.
    pub(crate) fn nstring(&mut self) -> Result<Option<Vec<u8>>, Syntax> {
        match self.peek() {
            Some(b'"' | b'{') => self.string().map(Some),
            _ => {
                let a = self.atom()?;
                if a.eq_ignore_ascii_case(b"NIL") {
                    Ok(None)
                } else {
                    Err(Syntax)
                }
            }
        }
    }

    /// `string = quoted / literal`.
    pub(crate) fn string(&mut self) -> Result<Vec<u8>, Syntax> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err(Syntax),
        }
    }

    /// `quoted = DQUOTE *QUOTED-CHAR DQUOTE` with `\"` and `\\` escapes. 8-bit bytes are
    /// accepted (RFC 6855 style UTF-8 passwords); CR, LF and NUL are not.
    fn quoted(&mut self) -> Result<Vec<u8>, Syntax> {
        self.byte(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek().ok_or(Syntax)? {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => out.push(c),
                        _ => return Err(Syntax),
                    }
                    self.pos += 1;
                }
                b'\r' | b'\n' | 0 => return Err(Syntax),
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `literal = "{" number ["+"] "}" CRLF *CHAR8` — the framer already placed the data.
    fn literal(&mut self) -> Result<Vec<u8>, Syntax> {
        self.byte(b'{')?;
        let digits = self.take_while(|b| b.is_ascii_digit());
        let size = literal_size(digits).ok_or(Syntax)?;
        if self.peek() == Some(b'+') {
            self.pos += 1;
        }
        self.byte(b'}')?;
        self.byte(b'\r')?;
        self.byte(b'\n')?;
        let size = usize::try_from(size).map_err(|_| Syntax)?;
        let end = self.pos.checked_add(size).ok_or(Syntax)?;
        let data = self.input.get(self.pos..end).ok_or(Syntax)?;
        self.pos = end;
        Ok(data.to_vec())
    }
}

/// True if `s` can be sent as an IMAP quoted string (escaping `"` and `\`).
pub(crate) fn quotable(s: &[u8]) -> bool {
    s.iter().all(|&b| (0x20..0x7f).contains(&b))
}

/// Append `s` as a quoted string; the caller checked [`quotable`].
pub(crate) fn push_quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut rest = s;
    // Runs without `"` or `\\` copied at once, each of those escaped.
    while let Some(i) = rest.iter().position(|&b| b == b'"' || b == b'\\') {
        out.extend_from_slice(&rest[..i]);
        out.push(b'\\');
        out.push(rest[i]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Replace CR, LF and other control characters so a text can go into a response line.
pub(crate) fn sanitize_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    push_sanitized(&mut out, text, max);
    out
}

/// Append [`sanitize_text`]'s result to `out` (at most `max` characters, trimmed, and
/// `Service unavailable.` for a text that is empty then).
pub(crate) fn push_sanitized(out: &mut String, text: &str, max: usize) {
    let start = out.len();
    out.extend(
        text.chars()
            .take(max)
            .map(|c| if c.is_control() { ' ' } else { c }),
    );
    let end = start + out[start..].trim_end().len();
    out.truncate(end);
    let lead = out[start..].len() - out[start..].trim_start().len();
    out.drain(start..start + lead);
    if out.len() == start {
        out.push_str("Service unavailable.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert!(valid_tag(b"a001", 64));
        assert!(valid_tag(b"A]1", 64));
        for bad in [
            &b""[..],
            b"a+1",
            b"a*",
            b"a{",
            b"a\"",
            b"a\\b",
            b"a(",
            b"a%",
            b"\xc3\xa4",
        ] {
            assert!(!valid_tag(bad, 64), "{bad:?}");
        }
        assert!(!valid_tag(&[b'a'; 65], 64));
    }

    #[test]
    fn literal_sizes_saturate() {
        assert_eq!(literal_size(b"4294967296"), Some(4_294_967_296));
        assert_eq!(literal_size(b"99999999999999999999999"), Some(u64::MAX));
        assert_eq!(literal_size(b""), None);
        assert_eq!(
            announced_literal(b"a LOGIN {5+}"),
            Some(Announced {
                size: 5,
                non_sync: true
            })
        );
        assert_eq!(announced_literal(b"a LOGIN {x}"), None);
        assert_eq!(announced_literal(b"a LOGIN x"), None);
    }

    #[test]
    fn strings() {
        let mut l = Lexer::new(b"\"a\\\"b\\\\c\" {3}\r\nxyz NIL atom]\r\n");
        assert_eq!(l.astring(), Ok(b"a\"b\\c".to_vec()));
        l.sp().expect("sp");
        assert_eq!(l.astring(), Ok(b"xyz".to_vec()));
        l.sp().expect("sp");
        assert_eq!(l.nstring(), Ok(None));
        l.sp().expect("sp");
        assert_eq!(l.astring(), Ok(b"atom]".to_vec()));
        assert_eq!(l.eol(), Ok(()));
        assert_eq!(Lexer::new(b"\"a\\x\"").astring(), Err(Syntax));
        assert_eq!(Lexer::new(b"{9}\r\nab").astring(), Err(Syntax));
        assert_eq!(Lexer::new(b"u*m%x").astring(), Ok(b"u*m%x".to_vec()));
        assert_eq!(Lexer::new(b"\"u*m\"").astring(), Ok(b"u*m".to_vec()));
        let mut q = Vec::new();
        push_quoted(&mut q, b"p\"w\\");
        assert_eq!(q, b"\"p\\\"w\\\\\"");
        // The same bytes as escaping one byte at a time.
        for s in [
            &b""[..],
            b"\"",
            b"\\",
            b"\"\"",
            b"a\\\"b",
            b"plain",
            b"\\end\\",
        ] {
            let mut slow = vec![b'"'];
            for &b in s {
                if b == b'"' || b == b'\\' {
                    slow.push(b'\\');
                }
                slow.push(b);
            }
            slow.push(b'"');
            let mut fast = b"x".to_vec();
            push_quoted(&mut fast, s);
            assert_eq!(fast[1..], slow[..]);
        }
        assert_eq!(sanitize_text("down\r\n* BYE", 100), "down  * BYE");
    }

    #[test]
    fn sanitized_text_is_trimmed_bounded_and_never_empty() {
        assert_eq!(sanitize_text(" \x01 hi\tthere \r\n", 100), "hi there");
        assert_eq!(sanitize_text("\r\n\t ", 100), "Service unavailable.");
        assert_eq!(sanitize_text("", 100), "Service unavailable.");
        // At most `max` characters are kept, counted before the trim.
        assert_eq!(sanitize_text(" abc", 2), "a");
        assert_eq!(sanitize_text("ééé", 2), "éé");
        let mut out = String::from("* OK ");
        push_sanitized(&mut out, "  ready\r\n", 50);
        assert_eq!(out, "* OK ready");
    }
}
