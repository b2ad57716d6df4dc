//! Where a stream of IMAP server responses stands: between two responses, or inside one
//! (a line not yet ended, a literal not yet complete). mailgate may only insert its own
//! `* BYE` into a spliced session between two responses, so the splice feeds every
//! backend → client chunk through [`ResponseBoundary`]. Literal data is skipped by count,
//! so a bulk FETCH costs a few comparisons per chunk, not per byte.

/// Tracks response boundaries in IMAP server output.
#[derive(Debug, Clone, Default)]
pub struct ResponseBoundary {
    state: State,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// At the start of a response line.
    #[default]
    LineStart,
    /// Inside a line.
    Line,
    /// After `{` inside a line, reading the literal's size.
    Size(u64),
    /// After `{N}` (or `{N+}`).
    SizeEnd(u64),
    /// After `{N}\r`.
    SizeCr(u64),
    /// After `\r` inside a line.
    Cr,
    /// Inside literal data, this many octets to go; the line continues after it.
    Literal(u64),
}

impl ResponseBoundary {
    /// A tracker at a boundary (right after the login verdict).
    pub fn new() -> Self {
        ResponseBoundary::default()
    }

    /// True when everything fed so far ends exactly between two responses.
    pub fn at_boundary(&self) -> bool {
        self.state == State::LineStart
    }

    /// Account for `data`, the next bytes of the server's output.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if let State::Literal(left) = self.state {
                let take = left.min(data.len() as u64);
                data = &data[take as usize..];
                let left = left - take;
                self.state = if left == 0 {
                    State::Line
                } else {
                    State::Literal(left)
                };
                continue;
            }
            let b = data[0];
            data = &data[1..];
            self.state = match (self.state, b) {
                (State::Cr, b'\n') => State::LineStart,
                (State::SizeCr(0), b'\n') => State::Line,
                (State::SizeCr(n), b'\n') => State::Literal(n),
                (_, b'\r') => match self.state {
                    State::SizeEnd(n) => State::SizeCr(n),
                    _ => State::Cr,
                },
                (_, b'{') => State::Size(0),
                (State::Size(n), d @ b'0'..=b'9') => {
                    State::Size(n.saturating_mul(10).saturating_add(u64::from(d - b'0')))
                }
                (State::Size(n), b'+') => State::Size(n),
                (State::Size(n), b'}') => State::SizeEnd(n),
                _ => State::Line,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(chunks: &[&[u8]]) -> ResponseBoundary {
        let mut b = ResponseBoundary::new();
        for c in chunks {
            b.feed(c);
        }
        b
    }

    #[test]
    fn lines_and_literals() {
        assert!(fed(&[]).at_boundary());
        assert!(fed(&[b"* 1 EXISTS\r\n"]).at_boundary());
        assert!(!fed(&[b"* 1 EXISTS"]).at_boundary());
        assert!(!fed(&[b"* 1 EXISTS\r"]).at_boundary());
        assert!(fed(&[b"* 1 EXISTS\r", b"\n"]).at_boundary());
        let fetch = b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\na1 OK done\r\n";
        assert!(fed(&[fetch]).at_boundary());
        // Inside the literal, even right after its CRLF-looking bytes.
        assert!(!fed(&[&fetch[..27]]).at_boundary());
        assert!(!fed(&[&fetch[..29]]).at_boundary());
        // Every split gives the same answer as the whole.
        for i in 0..fetch.len() {
            let b = fed(&[&fetch[..i], &fetch[i..]]);
            assert!(b.at_boundary(), "split at {i}");
        }
        // Braces that are not literals.
        assert!(fed(&[b"* OK {not a literal}\r\n"]).at_boundary());
        assert!(fed(&[b"* OK {12}x\r\n"]).at_boundary());
        assert!(fed(&[b"* X {0}\r\n)\r\n"]).at_boundary());
        assert!(fed(&[b"* X {3+}\r\n\r\n\r)\r\n"]).at_boundary());
    }
}
