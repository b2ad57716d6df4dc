//! Command framing for the client side: splits the byte stream into complete commands
//! (lines plus their literals) under the limits, before any parsing.
//!
//! Like imap-codec's fragmentizer it only looks at line ends and literal announcements,
//! so a literal whose content looks like a command stays data. Every byte it keeps is
//! bounded: command lines by `max_line` in total, literal data by `2 * max_literal` per
//! command (LOGIN needs two), and a partial line is refused as soon as it passes the limit.

use std::fmt;

use super::lexer::{Announced, announced_literal, strip_eol};
use crate::limits::Limits;
use crate::redact::Len;

/// One framing step. `Debug` shows lengths only (a command may be a LOGIN).
#[derive(PartialEq, Eq)]
pub(crate) enum Framed {
    /// More bytes are needed.
    Need,
    /// A complete command: its lines (with line endings) and inline literal data.
    Command(Vec<u8>),
    /// A synchronizing literal within the limits was announced: send `+`.
    Continue,
    /// A synchronizing literal over the limit: answer `NO [TOOBIG]` to this tag (not yet
    /// validated); the command was dropped and the client will not send the data.
    TooBig(Vec<u8>),
    /// A non-synchronizing literal over the limit: the data is already on its way.
    LiteralTooLarge,
    /// A line longer than the limit.
    LineTooLong,
}

/// The client byte stream and the command being assembled. `Debug` shows lengths only.
#[derive(Default)]
pub(crate) struct Framer {
    /// Bytes received and not yet framed.
    pub(crate) input: Vec<u8>,
    /// How much of `input` is known to hold no LF.
    scanned: usize,
    /// The command assembled so far.
    cmd: Vec<u8>,
    line_bytes: usize,
    literal_bytes: usize,
    /// Literal data still expected.
    literal_left: usize,
    /// The line limit of the command being assembled (from its name, on its first line).
    line_limit: Option<usize>,
}

/// The line limit for a command whose first line starts with `head`: larger for
/// `AUTHENTICATE` (OAuth tokens) and `ID` (RFC 2971 maxima), `max_line` for the rest.
fn line_limit_for(head: &[u8], limits: &Limits) -> usize {
    let mut words = head.splitn(3, |b| *b == b' ');
    let _tag = words.next();
    let name = words.next().unwrap_or_default();
    let name = name.strip_suffix(b"\r\n").unwrap_or(name);
    if name.eq_ignore_ascii_case(b"AUTHENTICATE") {
        limits.max_line.max(limits.max_sasl_line)
    } else if name.eq_ignore_ascii_case(b"ID") {
        limits.max_line.max(limits.max_id_line)
    } else {
        limits.max_line
    }
}

impl Framer {
    /// Most bytes a command may occupy (lines plus literals).
    pub(crate) fn command_cap(limits: &Limits) -> usize {
        limits
            .max_line
            .saturating_add(limits.max_literal.saturating_mul(2))
    }

    /// Bytes currently held (input plus the partial command).
    pub(crate) fn held(&self) -> usize {
        self.input.len() + self.cmd.len()
    }

    /// True if nothing is buffered at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_empty() && self.cmd.is_empty()
    }

    /// Forget everything (STARTTLS: RFC 3501 §6.2.1, nothing from before the handshake).
    pub(crate) fn clear(&mut self) {
        *self = Framer::default();
    }

    fn drop_command(&mut self) {
        self.cmd.clear();
        self.line_limit = None;
        self.line_bytes = 0;
        self.literal_bytes = 0;
        self.literal_left = 0;
    }

    /// Take one complete line (for SASL continuations), at most `max` bytes.
    pub(crate) fn line(&mut self, max: usize) -> Result<Option<Vec<u8>>, Framed> {
        match self.find_lf() {
            Some(end) if end > max => Err(Framed::LineTooLong),
            Some(end) => Ok(Some(self.input.drain(..end).collect())),
            None if self.input.len() > max => Err(Framed::LineTooLong),
            None => Ok(None),
        }
    }

    /// Index just past the next LF in `input`, remembering how far we looked.
    fn find_lf(&mut self) -> Option<usize> {
        match self.input[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = self.scanned + i + 1;
                self.scanned = 0;
                Some(end)
            }
            None => {
                self.scanned = self.input.len();
                None
            }
        }
    }

    /// The next framing step.
    pub(crate) fn next(&mut self, limits: &Limits) -> Framed {
        if self.literal_left > 0 {
            if self.input.is_empty() {
                return Framed::Need;
            }
            let n = self.literal_left.min(self.input.len());
            self.cmd.extend(self.input.drain(..n));
            self.literal_left -= n;
            if self.literal_left > 0 {
                return Framed::Need;
            }
        }
        let limit = match self.line_limit {
            Some(l) => l,
            // The command's name is in its first 64 octets (tag ≤ 64 is checked later).
            None if self.input.len() < 80 && !self.input.contains(&b'\n') => limits.max_line,
            None => line_limit_for(&self.input[..self.input.len().min(96)], limits),
        };
        let Some(end) = self.find_lf() else {
            if self.line_bytes + self.input.len() > limit {
                return Framed::LineTooLong;
            }
            return Framed::Need;
        };
        let limit = *self
            .line_limit
            .get_or_insert_with(|| line_limit_for(&self.input[..end.min(96)], limits));
        if self.line_bytes + end > limit {
            return Framed::LineTooLong;
        }
        self.line_bytes += end;
        let announced = announced_literal(strip_eol(&self.input[..end]));
        self.cmd.extend(self.input.drain(..end));
        let Some(Announced { size, non_sync }) = announced else {
            let cmd = std::mem::take(&mut self.cmd);
            self.drop_command();
            return Framed::Command(cmd);
        };
        let room = limits
            .max_literal
            .saturating_mul(2)
            .saturating_sub(self.literal_bytes);
        let fits = usize::try_from(size)
            .ok()
            .filter(|&n| n <= limits.max_literal && n <= room);
        match (fits, non_sync) {
            (Some(n), _) => {
                self.literal_bytes += n;
                self.literal_left = n;
                if non_sync {
                    // RFC 7888 §3: no continuation request for `{n+}`.
                    self.next(limits)
                } else {
                    Framed::Continue
                }
            }
            (None, true) => Framed::LiteralTooLarge,
            (None, false) => {
                let tag = self.cmd.split(|&b| b == b' ').next().unwrap_or_default();
                let tag = strip_eol(tag).to_vec();
                self.drop_command();
                Framed::TooBig(tag)
            }
        }
    }
}

impl fmt::Debug for Framed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Framed::Need => f.write_str("Need"),
            Framed::Command(c) => f.debug_tuple("Command").field(&Len::of(c)).finish(),
            Framed::Continue => f.write_str("Continue"),
            Framed::TooBig(tag) => f.debug_tuple("TooBig").field(&Len::of(tag)).finish(),
            Framed::LiteralTooLarge => f.write_str("LiteralTooLarge"),
            Framed::LineTooLong => f.write_str("LineTooLong"),
        }
    }
}

impl fmt::Debug for Framer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framer")
            .field("input", &Len::of(&self.input))
            .field("scanned", &self.scanned)
            .field("cmd", &Len::of(&self.cmd))
            .field("line_bytes", &self.line_bytes)
            .field("literal_bytes", &self.literal_bytes)
            .field("literal_left", &self.literal_left)
            .field("line_limit", &self.line_limit)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(f: &mut Framer, data: &[u8]) -> Vec<Framed> {
        f.input.extend_from_slice(data);
        let limits = Limits::default();
        let mut out = Vec::new();
        loop {
            match f.next(&limits) {
                Framed::Need => return out,
                x @ (Framed::LineTooLong | Framed::LiteralTooLarge) => {
                    out.push(x);
                    return out;
                }
                x => out.push(x),
            }
        }
    }

    #[test]
    fn frames_lines_and_literals() {
        let mut f = Framer::default();
        assert_eq!(
            frame(&mut f, b"a NOOP\r\nb LOGIN {3}\r\n"),
            vec![Framed::Command(b"a NOOP\r\n".to_vec()), Framed::Continue]
        );
        assert_eq!(frame(&mut f, b"x\r\n"), vec![]);
        assert_eq!(
            frame(&mut f, b" {2+}\r\npw\r\n"),
            vec![Framed::Command(
                b"b LOGIN {3}\r\nx\r\n {2+}\r\npw\r\n".to_vec()
            )]
        );
        assert!(f.is_empty());
    }

    #[test]
    fn refuses_oversized() {
        let mut f = Framer::default();
        assert_eq!(
            frame(&mut f, b"t1 LOGIN {4294967296}\r\n"),
            vec![Framed::TooBig(b"t1".to_vec())]
        );
        assert_eq!(
            frame(&mut f, b"t2 LOGIN {99999999999999999999+}\r\n"),
            vec![Framed::LiteralTooLarge]
        );
        let mut f = Framer::default();
        assert_eq!(frame(&mut f, &[b'a'; 9000]), vec![Framed::LineTooLong]);
    }
}
