//! Line framing shared by both POP3 engines: find one complete line in a bounded buffer.
//!
//! POP3 is line based (RFC 1939 §3). Lines end in CRLF; a bare LF is accepted too, as real
//! servers and clients do. The caller decides the limit per line; this module only says
//! "here is a line", "need more bytes" or "the line is longer than the limit".

/// Longest command mailgate sends to a POP3 backend, CRLF included (RFC 2449 §4).
pub(crate) const MAX_COMMAND: usize = 255;

/// Outcome of looking for one line at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framed {
    /// A complete line: `content` bytes without the terminator, `consumed` bytes in total.
    Line { content: usize, consumed: usize },
    /// No line terminator yet and the limit is not reached.
    NeedMore,
    /// No terminator within `limit` bytes (terminator included).
    TooLong,
}

/// Look for a line of at most `limit` bytes (terminator included) at the start of `buf`.
pub(crate) fn frame(buf: &[u8], limit: usize) -> Framed {
    let window = &buf[..buf.len().min(limit)];
    match window.iter().position(|b| *b == b'\n') {
        Some(lf) => {
            let content = if lf > 0 && buf[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            Framed::Line {
                content,
                consumed: lf + 1,
            }
        }
        None if buf.len() >= limit => Framed::TooLong,
        None => Framed::NeedMore,
    }
}

/// Remove one complete line from the front of `buf`; returns its content (no terminator).
pub(crate) fn take_line(buf: &mut Vec<u8>, content: usize, consumed: usize) -> Vec<u8> {
    let mut line: Vec<u8> = buf.drain(..consumed).collect();
    line.truncate(content);
    line
}

/// Split `line` at its first space: `(verb, Some(rest))` or `(line, None)`.
pub(crate) fn split_verb(line: &[u8]) -> (&[u8], Option<&[u8]>) {
    match line.iter().position(|b| *b == b' ') {
        Some(sp) => (&line[..sp], Some(&line[sp + 1..])),
        None => (line, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_known_answers() {
        assert_eq!(
            frame(b"CAPA\r\nX", 255),
            Framed::Line {
                content: 4,
                consumed: 6
            }
        );
        assert_eq!(
            frame(b"CAPA\nX", 255),
            Framed::Line {
                content: 4,
                consumed: 5
            }
        );
        assert_eq!(frame(b"CAP", 255), Framed::NeedMore);
        assert_eq!(frame(b"CAPA\r", 5), Framed::TooLong);
        assert_eq!(
            frame(b"CAP\r\n", 5),
            Framed::Line {
                content: 3,
                consumed: 5
            }
        );
        assert_eq!(split_verb(b"USER a b"), (&b"USER"[..], Some(&b"a b"[..])));
        assert_eq!(split_verb(b"QUIT"), (&b"QUIT"[..], None));
    }
}
