//! Body of the `probe_reader` fuzz target (crates/mailgate/fuzz), shared with the corpus
//! replay test (`tests/fuzz_corpus.rs`). Not an API: it panics when an oracle fails.
//! Compiled with the `fuzzing` feature, which needs tokio's paused clock.
//!
//! A backend sends arbitrary bytes to the probe conversation ([`after_login`] /
//! [`logout`]) over an in-memory stream, in arbitrary write sizes, then either closes or
//! keeps the connection open and silent. Oracles: the probe never panics; it always ends,
//! within its step timeouts (on a paused clock, so a hang costs no real time); an error
//! names the step it happened in; and with a backend that stays open the outcome is
//! exactly what a plain model of the conversation predicts (success only when every
//! command got its `OK` / `+OK`, otherwise the step that did not).

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::conversation::{after_login, logout};
use crate::probe::{ProbeError, ProbeStep};
use crate::settings::Protocol;

/// The step timeout the probe runs with (virtual time).
const TIMEOUT: Duration = Duration::from_secs(3);
/// The probe's line limit (conversation.rs).
const MAX_LINE: usize = 16 * 1024;
/// The in-memory stream's buffer: the most one read can return.
const PIPE: usize = 1024;
/// An endless first line, for the oversized-line check.
const PAD: usize = 24 * 1024;

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Predicted {
    Ok,
    Failed(ProbeStep),
    /// Depends on how reads split the bytes (a line just around the limit).
    Unknown,
}

/// The conversation as a plain model over all bytes the backend sends.
struct Model<'a> {
    data: &'a [u8],
    pos: usize,
}

enum Line<'a> {
    Complete(&'a [u8]),
    /// The backend went quiet (or closed) before a complete line.
    End,
    TooLong,
    Unknown,
}

impl<'a> Model<'a> {
    fn line(&mut self) -> Line<'a> {
        let rest = &self.data[self.pos..];
        match rest.windows(2).position(|w| w == b"\r\n") {
            // Without a complete CRLF the buffer holds at most q + 1 bytes (q: the CR).
            Some(q) if q < MAX_LINE => {
                self.pos += q + 2;
                Line::Complete(&rest[..q])
            }
            Some(q) if q >= MAX_LINE + PIPE => Line::TooLong,
            Some(_) => Line::Unknown,
            None if rest.len() > MAX_LINE + PIPE => Line::TooLong,
            None if rest.len() > MAX_LINE => Line::Unknown,
            None => Line::End,
        }
    }

    /// IMAP: skip lines up to `tag`'s, which must be OK.
    fn tagged(&mut self, tag: &[u8]) -> Result<(), Predicted> {
        loop {
            let line = match self.line() {
                Line::Complete(l) => l,
                Line::Unknown => return Err(Predicted::Unknown),
                Line::End | Line::TooLong => return Err(Predicted::Failed(ProbeStep::Probe)),
            };
            if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(b" ")) {
                return ok_prefix(rest, b"OK");
            }
        }
    }

    /// POP3: the next line must start with `+OK`.
    fn status(&mut self) -> Result<(), Predicted> {
        match self.line() {
            Line::Complete(l) => ok_prefix(l, b"+OK"),
            Line::Unknown => Err(Predicted::Unknown),
            Line::End | Line::TooLong => Err(Predicted::Failed(ProbeStep::Probe)),
        }
    }
}

fn ok_prefix(status: &[u8], ok: &[u8]) -> Result<(), Predicted> {
    if status
        .get(..ok.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(ok))
    {
        Ok(())
    } else {
        Err(Predicted::Failed(ProbeStep::Probe))
    }
}

/// Run `step` in the model; a failure is attributed to `name`.
fn step(r: Result<(), Predicted>, name: ProbeStep) -> Result<(), Predicted> {
    r.map_err(|p| match p {
        Predicted::Failed(_) => Predicted::Failed(name),
        other => other,
    })
}

fn predict(data: &[u8], protocol: Protocol, with_account: bool) -> Predicted {
    let mut m = Model { data, pos: 0 };
    let outcome = match (protocol, with_account) {
        (Protocol::Imap, true) => step(m.tagged(b"p1"), ProbeStep::Mailbox)
            .and_then(|()| step(m.tagged(b"p2"), ProbeStep::Logout)),
        (Protocol::Pop3, true) => {
            step(m.status(), ProbeStep::Mailbox).and_then(|()| step(m.status(), ProbeStep::Logout))
        }
        (Protocol::Imap, false) => step(m.tagged(b"p9"), ProbeStep::Logout),
        (Protocol::Pop3, false) => step(m.status(), ProbeStep::Logout),
    };
    match outcome {
        Ok(()) => Predicted::Ok,
        Err(p) => p,
    }
}

/// The `probe_reader` fuzz target.
///
/// Byte 0: bit 0 POP3 (else IMAP), bit 1 with a probe account ([`after_login`], else
/// [`logout`]), bit 2 the backend stays open after its bytes (else it closes), bit 3 an
/// endless first line, bits 4-7 the backend's write size / 16. Byte 1: how many of the
/// following bytes were already buffered after the login verdict.
pub fn probe_reader(data: &[u8]) {
    let [control, split, rest @ ..] = data else {
        return;
    };
    let protocol = if control & 1 == 0 {
        Protocol::Imap
    } else {
        Protocol::Pop3
    };
    let with_account = control & 2 != 0;
    let stays_open = control & 4 != 0;
    let write_size = usize::from(control >> 4) * 16 + 1;
    let cut = if with_account {
        usize::from(*split).min(rest.len())
    } else {
        0
    };
    let buffered = rest[..cut].to_vec();
    let mut sent = Vec::with_capacity(rest.len() + PAD);
    if control & 8 != 0 {
        sent.resize(PAD, b'x');
    }
    sent.extend_from_slice(&rest[cut..]);
    let mut all = buffered.clone();
    all.extend_from_slice(&sent);
    let predicted = predict(&all, protocol, with_account);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let (result, elapsed) = runtime.block_on(async move {
        let (probe_end, mut backend_end) = tokio::io::duplex(PIPE);
        tokio::spawn(async move {
            for piece in sent.chunks(write_size) {
                if backend_end.write_all(piece).await.is_err() {
                    return;
                }
            }
            if stays_open {
                std::future::pending::<()>().await;
            }
        });
        let started = tokio::time::Instant::now();
        let probe = async {
            if with_account {
                after_login(Box::new(probe_end), buffered, protocol, TIMEOUT).await
            } else {
                logout(Box::new(probe_end), protocol, TIMEOUT).await
            }
        };
        let result = tokio::time::timeout(TIMEOUT * 10, probe).await;
        (result, started.elapsed())
    });
    let Ok(result) = result else {
        panic!("the probe did not end within its step timeouts");
    };
    // The backend writes without pause: at most one step waits out its timeout (plus the
    // bounded shutdown).
    assert!(
        elapsed <= TIMEOUT * 2 + Duration::from_millis(10),
        "the probe took {elapsed:?}"
    );
    check(&result, predicted, stays_open, with_account);
}

fn check(
    result: &Result<Duration, ProbeError>,
    predicted: Predicted,
    stays_open: bool,
    with_account: bool,
) {
    if let Err(e) = result {
        let allowed: &[ProbeStep] = if with_account {
            &[ProbeStep::Mailbox, ProbeStep::Logout]
        } else {
            &[ProbeStep::Logout]
        };
        assert!(
            allowed.contains(&e.step),
            "error names no step of the conversation"
        );
        // A refusal quotes at most 80 characters of the backend's line.
        assert!(
            !e.what.is_empty() && e.what.chars().count() <= 120,
            "error text empty or unbounded"
        );
    }
    let got = match result {
        Ok(_) => Predicted::Ok,
        Err(e) => Predicted::Failed(e.step),
    };
    match predicted {
        Predicted::Unknown => {}
        // An open, silent backend: every read either gets its line or times out.
        p if stays_open => assert_eq!(got, p, "probe outcome differs from the model"),
        // A closing backend can also make a later write fail, never an earlier success.
        Predicted::Ok => {}
        Predicted::Failed(step) => {
            assert!(
                got != Predicted::Ok,
                "probe succeeded where the model fails"
            );
            if step == ProbeStep::Mailbox {
                assert_eq!(got, predicted, "probe failed at another step");
            }
        }
    }
    if got == Predicted::Ok {
        assert!(
            predicted == Predicted::Ok || predicted == Predicted::Unknown,
            "probe succeeded where the model fails"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_known_answers() {
        let imap = |d: &[u8]| predict(d, Protocol::Imap, true);
        assert_eq!(imap(b"* 1 EXISTS\r\np1 OK x\r\np2 OK\r\n"), Predicted::Ok);
        assert_eq!(imap(b"p1 NO x\r\n"), Predicted::Failed(ProbeStep::Mailbox));
        assert_eq!(imap(b"p1 OK\r\n"), Predicted::Failed(ProbeStep::Logout));
        assert_eq!(
            predict(b"+OK\r\n-ERR\r\n", Protocol::Pop3, true),
            Predicted::Failed(ProbeStep::Logout)
        );
        let long = vec![b'x'; MAX_LINE + 10];
        assert_eq!(imap(&long), Predicted::Unknown);
        let longer = vec![b'x'; MAX_LINE + PIPE + 1];
        assert_eq!(imap(&longer), Predicted::Failed(ProbeStep::Mailbox));
    }

    #[test]
    fn seeds_of_both_kinds_run() {
        // An open backend that answers everything, and one that never answers.
        probe_reader(b"\x06\x00p1 OK\r\np2 OK\r\n");
        probe_reader(b"\x06\x00");
    }
}
