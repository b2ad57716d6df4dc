//! What a probe does once it is logged in, over an already open stream: IMAP `SELECT
//! INBOX` then `LOGOUT`, POP3 `STAT` then `QUIT` — the steps that catch a backend whose
//! mailbox database is deadlocked while logins still work. A probe without an account
//! only says goodbye (`LOGOUT` / `QUIT`).
//!
//! Everything up to the login verdict (resolve, connect, PROXY header, TLS, greeting,
//! capabilities, STARTTLS, the login replay) is done by the server's backend client, the
//! same code that relays client logins; this module never sees credentials. Every wait for
//! the backend is limited by `timeout`, and a failure names its step.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::probe::{ProbeError, ProbeStep};
use crate::settings::Protocol;

/// A connected stream to a backend.
pub trait ProbeStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ProbeStream for T {}

/// A boxed [`ProbeStream`].
pub type BoxStream = Box<dyn ProbeStream>;

struct Wire {
    stream: BoxStream,
    buf: Vec<u8>,
    timeout: Duration,
    slowest: Duration,
}

const MAX_LINE: usize = 16 * 1024;

impl Wire {
    async fn send(&mut self, bytes: &[u8], step: ProbeStep) -> Result<(), ProbeError> {
        let io = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ProbeError::new(step, format!("write failed: {}", e.kind()))),
            Err(_) => Err(ProbeError::timeout(step, self.timeout)),
        }
    }

    async fn line(&mut self, step: ProbeStep) -> Result<String, ProbeError> {
        let mut tmp = [0u8; 4096];
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).take(pos).collect();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() > MAX_LINE {
                return Err(ProbeError::new(step, "oversized line"));
            }
            let started = Instant::now();
            let n = match tokio::time::timeout(self.timeout, self.stream.read(&mut tmp)).await {
                Ok(Ok(0)) => return Err(ProbeError::new(step, "connection closed by backend")),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    return Err(ProbeError::new(step, format!("read failed: {}", e.kind())));
                }
                Err(_) => return Err(ProbeError::timeout(step, self.timeout)),
            };
            self.slowest = self.slowest.max(started.elapsed());
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// IMAP: skip untagged lines up to `tag`'s completion, which must be OK.
    async fn tagged(&mut self, tag: &str, step: ProbeStep) -> Result<(), ProbeError> {
        loop {
            let line = self.line(step).await?;
            if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                return expect_ok(rest, "OK", step);
            }
        }
    }
}

fn expect_ok(status: &str, ok: &str, step: ProbeStep) -> Result<(), ProbeError> {
    if status
        .get(..ok.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(ok))
    {
        Ok(())
    } else {
        let short: String = status.chars().take(80).collect();
        Err(ProbeError::new(step, format!("refused: {short}")))
    }
}

/// After an accepted probe login: open the mailbox (`SELECT INBOX` / `STAT`), then say
/// goodbye. `buffered` holds what the backend sent after its verdict. Returns the slowest
/// single wait.
pub async fn after_login(
    stream: BoxStream,
    buffered: Vec<u8>,
    protocol: Protocol,
    timeout: Duration,
) -> Result<Duration, ProbeError> {
    let mut w = Wire {
        stream,
        buf: buffered,
        timeout,
        slowest: Duration::ZERO,
    };
    let result = match protocol {
        Protocol::Imap => {
            async {
                w.send(b"p1 SELECT INBOX\r\n", ProbeStep::Mailbox).await?;
                w.tagged("p1", ProbeStep::Mailbox).await?;
                w.send(b"p2 LOGOUT\r\n", ProbeStep::Logout).await?;
                w.tagged("p2", ProbeStep::Logout).await
            }
            .await
        }
        Protocol::Pop3 => {
            async {
                w.send(b"STAT\r\n", ProbeStep::Mailbox).await?;
                let stat = w.line(ProbeStep::Mailbox).await?;
                expect_ok(&stat, "+OK", ProbeStep::Mailbox)?;
                w.send(b"QUIT\r\n", ProbeStep::Logout).await?;
                let bye = w.line(ProbeStep::Logout).await?;
                expect_ok(&bye, "+OK", ProbeStep::Logout)
            }
            .await
        }
    };
    let _ = tokio::time::timeout(timeout, w.stream.shutdown()).await;
    result.map(|()| w.slowest)
}

/// A probe without an account, once the backend greeted and answered its capabilities:
/// `LOGOUT` / `QUIT`, which must be answered. Returns the slowest single wait.
pub async fn logout(
    stream: BoxStream,
    protocol: Protocol,
    timeout: Duration,
) -> Result<Duration, ProbeError> {
    let mut w = Wire {
        stream,
        buf: Vec::new(),
        timeout,
        slowest: Duration::ZERO,
    };
    let result = match protocol {
        Protocol::Imap => {
            async {
                w.send(b"p9 LOGOUT\r\n", ProbeStep::Logout).await?;
                w.tagged("p9", ProbeStep::Logout).await
            }
            .await
        }
        Protocol::Pop3 => {
            async {
                w.send(b"QUIT\r\n", ProbeStep::Logout).await?;
                let bye = w.line(ProbeStep::Logout).await?;
                expect_ok(&bye, "+OK", ProbeStep::Logout)
            }
            .await
        }
    };
    let _ = tokio::time::timeout(timeout, w.stream.shutdown()).await;
    result.map(|()| w.slowest)
}

#[cfg(test)]
#[path = "conversation_tests.rs"]
mod tests;
