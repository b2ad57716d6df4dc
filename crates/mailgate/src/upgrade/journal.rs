//! journald as the log's destination. Under systemd, stderr is a stream to journald, which
//! stamps every line with its own time and reads a `<N>` syslog priority prefix. When
//! `$JOURNAL_STREAM` names the stream stderr is, [`JournalLines`] rewrites each text line:
//! the timestamp goes, the level becomes the priority (`<3>` error, `<4>` warn, `<6>` info,
//! `<7>` debug and trace), and no colour codes are written. JSON lines pass unchanged.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt as _;

/// Whether stderr is the journal stream systemd set up (`$JOURNAL_STREAM` = `dev:inode`).
pub fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    matches_stream(&value, meta.dev(), meta.ino())
}

fn matches_stream(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>().ok() == Some(dev) && i.parse::<u64>().ok() == Some(ino)
}

/// A writer that turns each formatted text line into a journald line.
#[derive(Debug)]
pub struct JournalLines<W> {
    inner: W,
}

impl<W: Write> JournalLines<W> {
    /// Wrap `inner` (stderr).
    pub fn new(inner: W) -> Self {
        JournalLines { inner }
    }
}

/// `2026-12-01T11:34:32.000861Z  WARN target: …` → `<4>WARN target: …`.
pub fn journal_line(line: &[u8]) -> Vec<u8> {
    let starts_with_time = line.len() > 20
        && line[..4].iter().all(u8::is_ascii_digit)
        && line[4] == b'-'
        && line[10] == b'T';
    if !starts_with_time {
        return line.to_vec();
    }
    let after_time = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let rest = &line[after_time..];
    let rest = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
    let priority: &[u8] = if rest.starts_with(b"ERROR") {
        b"<3>"
    } else if rest.starts_with(b"WARN") {
        b"<4>"
    } else if rest.starts_with(b"INFO") {
        b"<6>"
    } else {
        b"<7>"
    };
    [priority, rest].concat()
}

impl<W: Write> Write for JournalLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The log writer hands over one event at a time.
        self.inner.write_all(&journal_line(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_lose_the_time_and_gain_a_priority() {
        let cases: [(&str, &str); 5] = [
            (
                "2026-12-01T11:34:32.000861Z  WARN mailgate::admin: short token\n",
                "<4>WARN mailgate::admin: short token\n",
            ),
            (
                "2026-12-01T11:34:32.000861Z  INFO conn{listener=\"imap\"}: closed\n",
                "<6>INFO conn{listener=\"imap\"}: closed\n",
            ),
            (
                "2026-12-01T11:34:32.000861Z ERROR mailgate: upgrade failed\n",
                "<3>ERROR mailgate: upgrade failed\n",
            ),
            (
                "2026-12-01T11:34:32.000861Z DEBUG mailgate: x\n",
                "<7>DEBUG mailgate: x\n",
            ),
            ("{\"level\":\"INFO\"}\n", "{\"level\":\"INFO\"}\n"),
        ];
        for (input, want) in cases {
            let got = journal_line(input.as_bytes());
            assert_eq!(String::from_utf8_lossy(&got), want);
        }
    }

    #[test]
    fn the_stream_must_match_dev_and_inode() {
        assert!(matches_stream("8:12345", 8, 12345));
        assert!(!matches_stream("8:12345", 8, 1));
        assert!(!matches_stream("garbage", 8, 12345));
    }
}
