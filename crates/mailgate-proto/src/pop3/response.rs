//! Reading a POP3 backend's replies: status indicators (RFC 1939 §3), response codes
//! (RFC 2449 §8, RFC 3206), continuation lines (RFC 5034 §4) and CAPA lines (RFC 2449 §5).

use crate::capability::Capabilities;

/// The kind of one reply line. `Debug` shows the text's length only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status<'a> {
    /// `+OK [text]`.
    Ok(&'a [u8]),
    /// `-ERR [text]`.
    Err(&'a [u8]),
    /// `+ [base64]` SASL challenge.
    Continue(&'a [u8]),
}

impl std::fmt::Debug for Status<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::redact::Len;
        match self {
            Status::Ok(t) => f.debug_tuple("Ok").field(&Len::of(t)).finish(),
            Status::Err(t) => f.debug_tuple("Err").field(&Len::of(t)).finish(),
            Status::Continue(t) => f.debug_tuple("Continue").field(&Len::of(t)).finish(),
        }
    }
}

fn after_word<'a>(line: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
    let head = line.get(..word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    match &line[word.len()..] {
        [] => Some(&[]),
        [b' ', rest @ ..] => Some(rest),
        _ => None,
    }
}

/// Classify a reply line (without CRLF); `None` when it is none of the three.
pub(crate) fn status(line: &[u8]) -> Option<Status<'_>> {
    if let Some(text) = after_word(line, b"+OK") {
        Some(Status::Ok(text))
    } else if let Some(text) = after_word(line, b"-ERR") {
        Some(Status::Err(text))
    } else {
        after_word(line, b"+").map(Status::Continue)
    }
}

/// The response code at the start of a status text (`[SYS/TEMP] ...` → `SYS/TEMP`).
pub(crate) fn resp_code(text: &[u8]) -> Option<&[u8]> {
    let inner = text.strip_prefix(b"[")?;
    let end = inner.iter().position(|b| *b == b']')?;
    Some(&inner[..end])
}

/// What the backend said it can do, from its greeting and CAPA. `Debug` shows the flags and
/// how many lines there were, not the backend's text.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct BackendCaps {
    /// CAPA answered `+OK` (otherwise the other fields are unknown, RFC 1939-only server).
    pub(crate) known: bool,
    /// `USER` listed.
    pub(crate) user: bool,
    /// `STLS` listed.
    pub(crate) stls: bool,
    /// `SASL` mechanisms listed include PLAIN.
    pub(crate) sasl_plain: bool,
    /// `XCLIENT` listed in CAPA.
    pub(crate) xclient: bool,
    /// `PIPELINING` listed (RFC 2449 §6.6): commands may be sent without waiting.
    pub(crate) pipelining: bool,
    /// The CAPA lines as they came, each behind its length (4 bytes, little-endian): one
    /// buffer, parsed into [`Capabilities`] only when asked ([`list`](Self::list)).
    lines: Vec<u8>,
    line_count: usize,
}

impl std::fmt::Debug for BackendCaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendCaps")
            .field("known", &self.known)
            .field("user", &self.user)
            .field("stls", &self.stls)
            .field("sasl_plain", &self.sasl_plain)
            .field("xclient", &self.xclient)
            .field("pipelining", &self.pipelining)
            .field("lines", &self.line_count)
            .finish()
    }
}

impl BackendCaps {
    /// The whole list, as the server records it.
    pub(crate) fn list(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        let mut rest = &self.lines[..];
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_le_bytes(*len) as usize;
            let (line, tail) = tail.split_at(len.min(tail.len()));
            caps.add_pop3_line(line);
            rest = tail;
        }
        caps
    }

    /// Take one CAPA line (dot-stuffing already removed).
    pub(crate) fn add_line(&mut self, line: &[u8]) {
        // Lines are bounded by `upstream_max_line`, far below 4 GiB.
        let len = u32::try_from(line.len()).unwrap_or(u32::MAX);
        self.lines.extend_from_slice(&len.to_le_bytes());
        self.lines.extend_from_slice(&line[..len as usize]);
        self.line_count += 1;
        let mut words = line.split(|b| *b == b' ').filter(|w| !w.is_empty());
        let Some(tag) = words.next() else { return };
        let is = |name: &[u8]| tag.eq_ignore_ascii_case(name);
        if is(b"USER") {
            self.user = true;
        } else if is(b"STLS") {
            self.stls = true;
        } else if is(b"XCLIENT") {
            self.xclient = true;
        } else if is(b"PIPELINING") {
            self.pipelining = true;
        } else if is(b"SASL") {
            self.sasl_plain |= words.any(|m| m.eq_ignore_ascii_case(b"PLAIN"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_known_answers() {
        assert_eq!(status(b"+OK"), Some(Status::Ok(b"")));
        assert_eq!(
            status(b"+OK [XCLIENT] Dovecot ready."),
            Some(Status::Ok(b"[XCLIENT] Dovecot ready."))
        );
        assert_eq!(status(b"-ERR [AUTH] no"), Some(Status::Err(b"[AUTH] no")));
        assert_eq!(status(b"+ "), Some(Status::Continue(b"")));
        assert_eq!(status(b"+"), Some(Status::Continue(b"")));
        assert_eq!(
            status(b"+ VXNlcm5hbWU6"),
            Some(Status::Continue(b"VXNlcm5hbWU6"))
        );
        assert_eq!(status(b"+OKAY"), None);
        assert_eq!(status(b"* OK"), None);
        assert_eq!(resp_code(b"[SYS/TEMP] later"), Some(&b"SYS/TEMP"[..]));
        assert_eq!(resp_code(b"[XCLIENT"), None);
        assert_eq!(resp_code(b"plain"), None);
    }

    #[test]
    fn capa_lines() {
        let mut caps = BackendCaps::default();
        for l in [
            &b"TOP"[..],
            b"USER",
            b"SASL LOGIN PLAIN",
            b"stls",
            b"XCLIENT",
            b"",
        ] {
            caps.add_line(l);
        }
        assert!(caps.user && caps.stls && caps.sasl_plain && caps.xclient);
        assert!(!caps.pipelining);
        caps.add_line(b"pipelining");
        assert!(caps.pipelining);
        // The list made from the kept lines is the one made from the lines themselves.
        let lines: [&[u8]; 7] = [
            b"TOP",
            b"USER",
            b"SASL LOGIN PLAIN",
            b"stls",
            b"XCLIENT",
            b"",
            b"pipelining",
        ];
        assert_eq!(caps.list(), Capabilities::from_pop3(lines));
        assert!(caps.list().has_mechanism("plain") && caps.list().has("STLS"));
        assert!(!format!("{caps:?}").contains("SASL"), "{caps:?}");
        assert_eq!(BackendCaps::default().list(), Capabilities::default());
    }
}
