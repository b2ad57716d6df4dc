//! Reading a backend's responses during the login relay (RFC 3501 §7): framing with
//! literals, then classifying each response as continuation, untagged or tagged.
//!
//! A backend can be hostile or broken, so every response is bounded by
//! `upstream_max_line` bytes in total, literal data included.

use std::fmt;

use super::lexer::{announced_literal, strip_eol};
use crate::action::UpstreamError;
use crate::redact::{Clipped, Len};

/// One complete backend response, classified. `Debug` shows the response kind or status
/// and lengths, never the text.
#[derive(PartialEq, Eq)]
pub(crate) enum Response {
    /// `+ text`: a continuation request.
    Continue,
    /// `* ...`: the raw response (CRLF and any literals included) and its first word,
    /// upper-cased (`OK`, `BYE`, `CAPABILITY`, ...), and the text after that word.
    Untagged {
        raw: Vec<u8>,
        kind: String,
        rest: Vec<u8>,
    },
    /// `tag SP status ...`: the tag, the status (`OK`/`NO`/`BAD`, upper-cased) and the
    /// line after the tag without CRLF, e.g. `OK [CAPABILITY ...] Logged in`.
    Tagged {
        tag: Vec<u8>,
        status: String,
        line: Vec<u8>,
    },
}

/// Frames backend responses. `Debug` shows lengths only.
#[derive(Default)]
pub(crate) struct Reader {
    pub(crate) input: Vec<u8>,
    /// Where the response being framed continues (after literals already complete).
    resume: usize,
    /// Bytes before this index are known to hold no LF of the current line.
    scan: usize,
}

impl Reader {
    /// The next complete response, `Ok(None)` if more bytes are needed.
    pub(crate) fn next(&mut self, max: usize) -> Result<Option<Response>, UpstreamError> {
        loop {
            let from = self.scan.max(self.resume);
            let Some(i) = self.input[from..].iter().position(|&b| b == b'\n') else {
                if self.input.len() > max {
                    return Err(UpstreamError::LineTooLong);
                }
                self.scan = self.input.len();
                return Ok(None);
            };
            let end = from + i + 1;
            self.scan = 0;
            if end > max {
                return Err(UpstreamError::LineTooLong);
            }
            match announced_literal(strip_eol(&self.input[self.resume..end])) {
                Some(lit) => {
                    let size = usize::try_from(lit.size).map_err(|_| UpstreamError::LineTooLong)?;
                    let after = end.checked_add(size).filter(|&a| a <= max);
                    let after = after.ok_or(UpstreamError::LineTooLong)?;
                    if self.input.len() < after {
                        return Ok(None);
                    }
                    self.resume = after;
                }
                None => {
                    self.resume = 0;
                    let raw: Vec<u8> = self.input.drain(..end).collect();
                    return classify(raw).map(Some);
                }
            }
        }
    }
}

fn word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

fn classify(raw: Vec<u8>) -> Result<Response, UpstreamError> {
    let line = strip_eol(&raw);
    if line.first() == Some(&b'+') {
        return Ok(Response::Continue);
    }
    let (tag, after) = word(line);
    if tag.is_empty() {
        return Err(UpstreamError::Malformed);
    }
    if tag == b"*" {
        let (kind, rest) = word(after);
        let kind = String::from_utf8_lossy(kind).to_ascii_uppercase();
        let rest = rest.to_vec();
        return Ok(Response::Untagged { raw, kind, rest });
    }
    let (status, _) = word(after);
    let status = String::from_utf8_lossy(status).to_ascii_uppercase();
    if !matches!(status.as_str(), "OK" | "NO" | "BAD") || after.contains(&b'\n') {
        return Err(UpstreamError::Malformed);
    }
    Ok(Response::Tagged {
        tag: tag.to_vec(),
        status,
        line: after.to_vec(),
    })
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Continue => f.write_str("Continue"),
            Response::Untagged { raw, kind, rest } => f
                .debug_struct("Untagged")
                .field("raw", &Len::of(raw))
                .field("kind", &known_kind(kind))
                .field("rest", &Len::of(rest))
                .finish(),
            // `status` is one of OK/NO/BAD (checked by `classify`).
            Response::Tagged { tag, status, line } => f
                .debug_struct("Tagged")
                .field("tag", &Len::of(tag))
                .field("status", &Clipped(status, 3))
                .field("line", &Len::of(line))
                .finish(),
        }
    }
}

/// The kind of an untagged response for `Debug`: one mailgate knows, or `?` (the first word
/// is the backend's text).
fn known_kind(kind: &str) -> &str {
    const KNOWN: [&str; 8] = [
        "OK",
        "NO",
        "BAD",
        "BYE",
        "PREAUTH",
        "CAPABILITY",
        "ID",
        "ENABLED",
    ];
    KNOWN.into_iter().find(|k| *k == kind).unwrap_or("?")
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("input", &Len::of(&self.input))
            .field("resume", &self.resume)
            .field("scan", &self.scan)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_responses() {
        let mut r = Reader::default();
        r.input
            .extend_from_slice(b"* ID (\"name\" {3}\r\nabc)\r\nmg1 ok [X] done\r\n+ go\r\n* OK");
        match r.next(1000) {
            Ok(Some(Response::Untagged { raw, kind, .. })) => {
                assert_eq!(kind, "ID");
                assert_eq!(raw, b"* ID (\"name\" {3}\r\nabc)\r\n");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.next(1000),
            Ok(Some(Response::Tagged {
                tag: b"mg1".to_vec(),
                status: "OK".into(),
                line: b"ok [X] done".to_vec()
            }))
        );
        assert_eq!(r.next(1000), Ok(Some(Response::Continue)));
        assert_eq!(r.next(1000), Ok(None));
        assert_eq!(r.next(3), Err(UpstreamError::LineTooLong));
        let mut r = Reader::default();
        r.input.extend_from_slice(b"* X {99999999999999999999}\r\n");
        assert_eq!(r.next(1000), Err(UpstreamError::LineTooLong));
        let mut r = Reader::default();
        r.input.extend_from_slice(b"mg1 MAYBE\r\n");
        assert_eq!(r.next(1000), Err(UpstreamError::Malformed));
    }
}
