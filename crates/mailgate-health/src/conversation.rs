//! The probe conversations over an already connected stream, so that the server's prober
//! only dials (DNS, TCP, implicit TLS) and hands the stream over.
//!
//! IMAP: greeting, [STARTTLS], CAPABILITY, LOGOUT; with a probe account the login is relayed
//! by mailgate-proto's `ImapUpstream` (greeting, capabilities, STARTTLS, LOGIN exactly as for
//! real clients), then `SELECT INBOX` and `LOGOUT`. POP3: greeting, [STLS], CAPA, QUIT; with
//! an account `Pop3Upstream` logs in, then `STAT` and `QUIT`. Every wait for the backend is
//! limited by `timeout` and a failure names its step. The reported latency is the slowest
//! single wait.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use mailgate_proto::UpstreamConfig;
use mailgate_proto::imap::ImapUpstream;
use mailgate_proto::pop3::Pop3Upstream;
use mailgate_proto::{Credentials, Limits, LoginRequest, LoginVerdict, Secret, UpstreamAction};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::probe::{ProbeError, ProbeOutcome, ProbeStep};

/// A connected stream to a backend.
pub trait ProbeStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ProbeStream for T {}

/// A boxed [`ProbeStream`].
pub type BoxStream = Box<dyn ProbeStream>;

/// Performs the TLS handshake after STARTTLS / STLS (supplied by the server).
pub type TlsUpgrade = Box<
    dyn FnOnce(BoxStream) -> Pin<Box<dyn Future<Output = io::Result<BoxStream>> + Send>> + Send,
>;

/// The probe account of a backend.
#[derive(Debug, Clone)]
pub struct ProbeAccount {
    /// Login name.
    pub user: String,
    /// Password (never logged).
    pub password: Secret,
}

/// How to run one probe conversation.
pub struct Conversation {
    /// Limit for each wait on the backend.
    pub timeout: Duration,
    /// Log in with this account (and open INBOX / STAT).
    pub account: Option<ProbeAccount>,
    /// Backend `tls: starttls`: how to upgrade the stream.
    pub starttls: Option<TlsUpgrade>,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation")
            .field("timeout", &self.timeout)
            .field("account", &self.account)
            .field("starttls", &self.starttls.is_some())
            .finish()
    }
}

struct Wire {
    stream: BoxStream,
    buf: Vec<u8>,
    timeout: Duration,
    slowest: Duration,
}

const MAX_LINE: usize = 16 * 1024;

impl Wire {
    async fn send(&mut self, bytes: &[u8], step: ProbeStep) -> Result<(), ProbeError> {
        match tokio::time::timeout(self.timeout, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ProbeError::new(step, format!("write failed: {}", e.kind()))),
            Err(_) => Err(ProbeError::timeout(step, self.timeout)),
        }
    }

    /// Read once (under the timeout) and return the new bytes.
    async fn chunk(&mut self, step: ProbeStep) -> Result<Vec<u8>, ProbeError> {
        let mut tmp = vec![0u8; 4096];
        let started = Instant::now();
        let n = match tokio::time::timeout(self.timeout, self.stream.read(&mut tmp)).await {
            Ok(Ok(0)) => return Err(ProbeError::new(step, "connection closed by backend")),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(ProbeError::new(step, format!("read failed: {}", e.kind()))),
            Err(_) => return Err(ProbeError::timeout(step, self.timeout)),
        };
        self.slowest = self.slowest.max(started.elapsed());
        tmp.truncate(n);
        Ok(tmp)
    }

    async fn line(&mut self, step: ProbeStep) -> Result<String, ProbeError> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).take(pos).collect();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() > MAX_LINE {
                return Err(ProbeError::new(step, "oversized line"));
            }
            let more = self.chunk(step).await?;
            self.buf.extend_from_slice(&more);
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

    async fn upgrade(&mut self, upgrade: Option<TlsUpgrade>) -> Result<(), ProbeError> {
        let Some(upgrade) = upgrade else {
            return Err(ProbeError::new(
                ProbeStep::StartTls,
                "no TLS upgrade supplied",
            ));
        };
        if !self.buf.is_empty() {
            return Err(ProbeError::new(
                ProbeStep::StartTls,
                "bytes after STARTTLS reply",
            ));
        }
        let placeholder: BoxStream = Box::new(tokio::io::duplex(1).0);
        let stream = std::mem::replace(&mut self.stream, placeholder);
        match tokio::time::timeout(self.timeout, upgrade(stream)).await {
            Ok(Ok(s)) => {
                self.stream = s;
                Ok(())
            }
            Ok(Err(e)) => Err(ProbeError::new(
                ProbeStep::Tls,
                format!("handshake failed: {e}"),
            )),
            Err(_) => Err(ProbeError::timeout(ProbeStep::Tls, self.timeout)),
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

fn login_request(account: &ProbeAccount) -> LoginRequest {
    LoginRequest {
        credentials: Credentials::Password {
            authzid: None,
            authcid: account.user.clone(),
            password: account.password.clone(),
        },
    }
}

/// Probe an IMAP backend over `stream`.
pub async fn imap_probe(stream: BoxStream, conv: Conversation) -> ProbeOutcome {
    run(stream, conv, true).await
}

/// Probe a POP3 backend over `stream`.
pub async fn pop3_probe(stream: BoxStream, conv: Conversation) -> ProbeOutcome {
    run(stream, conv, false).await
}

async fn run(stream: BoxStream, conv: Conversation, imap: bool) -> ProbeOutcome {
    let started = Instant::now();
    let mut wire = Wire {
        stream,
        buf: Vec::new(),
        timeout: conv.timeout,
        slowest: Duration::ZERO,
    };
    let result = match (imap, conv.account.clone()) {
        (true, None) => imap_plain(&mut wire, conv.starttls).await,
        (false, None) => pop3_plain(&mut wire, conv.starttls).await,
        (true, Some(acct)) => imap_login(&mut wire, conv.starttls, &acct).await,
        (false, Some(acct)) => pop3_login(&mut wire, conv.starttls, &acct).await,
    };
    let _ = wire.stream.shutdown().await;
    match result {
        Ok(()) => ProbeOutcome::ok(wire.slowest, started.elapsed()),
        Err(e) => ProbeOutcome::failed(e, started.elapsed()),
    }
}

async fn imap_plain(w: &mut Wire, starttls: Option<TlsUpgrade>) -> Result<(), ProbeError> {
    let greeting = w.line(ProbeStep::Greeting).await?;
    expect_ok(
        greeting.strip_prefix("* ").unwrap_or(&greeting),
        "OK",
        ProbeStep::Greeting,
    )?;
    if starttls.is_some() {
        w.send(b"p0 STARTTLS\r\n", ProbeStep::StartTls).await?;
        w.tagged("p0", ProbeStep::StartTls).await?;
        w.upgrade(starttls).await?;
    }
    w.send(b"p1 CAPABILITY\r\n", ProbeStep::Capability).await?;
    w.tagged("p1", ProbeStep::Capability).await?;
    w.send(b"p2 LOGOUT\r\n", ProbeStep::Logout).await?;
    w.tagged("p2", ProbeStep::Logout).await
}

async fn pop3_plain(w: &mut Wire, starttls: Option<TlsUpgrade>) -> Result<(), ProbeError> {
    let greeting = w.line(ProbeStep::Greeting).await?;
    expect_ok(&greeting, "+OK", ProbeStep::Greeting)?;
    if starttls.is_some() {
        w.send(b"STLS\r\n", ProbeStep::StartTls).await?;
        let reply = w.line(ProbeStep::StartTls).await?;
        expect_ok(&reply, "+OK", ProbeStep::StartTls)?;
        w.upgrade(starttls).await?;
    }
    w.send(b"CAPA\r\n", ProbeStep::Capability).await?;
    // A backend without CAPA answers -ERR: it is alive, which is all this step asks.
    if w.line(ProbeStep::Capability).await?.starts_with("+OK") {
        while w.line(ProbeStep::Capability).await? != "." {}
    }
    w.send(b"QUIT\r\n", ProbeStep::Logout).await?;
    let bye = w.line(ProbeStep::Logout).await?;
    expect_ok(&bye, "+OK", ProbeStep::Logout)
}

/// Drive an upstream engine through the login; leaves unread bytes in `w.buf`.
macro_rules! relay_login {
    ($w:expr, $engine:expr, $starttls:expr) => {{
        let mut starttls = $starttls;
        let mut step = ProbeStep::Greeting;
        loop {
            match $engine.next_action() {
                Err(e) => return Err(ProbeError::new(step, e.to_string())),
                Ok(Some(UpstreamAction::Send(bytes))) => {
                    $w.send(&bytes, step).await?;
                    if step == ProbeStep::Greeting {
                        step = ProbeStep::Capability;
                    }
                }
                Ok(Some(UpstreamAction::StartTls)) => {
                    $w.upgrade(starttls.take()).await?;
                    $engine.tls_started();
                }
                Ok(Some(UpstreamAction::CredentialsNext)) => step = ProbeStep::Login,
                Ok(Some(UpstreamAction::Done(verdict))) => match verdict {
                    LoginVerdict::Accepted(_) => break,
                    LoginVerdict::Rejected(reply) => {
                        let status = String::from_utf8_lossy(&reply.status).into_owned();
                        let short: String = status.chars().take(80).collect();
                        return Err(ProbeError::new(
                            ProbeStep::Login,
                            format!("refused: {short}"),
                        ));
                    }
                    other => {
                        return Err(ProbeError::new(ProbeStep::Login, format!("{other:?}")));
                    }
                },
                Ok(None) => {
                    let bytes = $w.chunk(step).await?;
                    $engine.feed(&bytes);
                }
            }
        }
        $engine.into_remaining()
    }};
}

async fn imap_login(
    w: &mut Wire,
    starttls: Option<TlsUpgrade>,
    account: &ProbeAccount,
) -> Result<(), ProbeError> {
    let config = UpstreamConfig {
        limits: Limits::default(),
        starttls: starttls.is_some(),
        forward: None,
    };
    let mut engine = ImapUpstream::new(config, login_request(account));
    w.buf = relay_login!(w, engine, starttls);
    w.send(b"p1 SELECT INBOX\r\n", ProbeStep::Mailbox).await?;
    w.tagged("p1", ProbeStep::Mailbox).await?;
    w.send(b"p2 LOGOUT\r\n", ProbeStep::Logout).await?;
    w.tagged("p2", ProbeStep::Logout).await
}

async fn pop3_login(
    w: &mut Wire,
    starttls: Option<TlsUpgrade>,
    account: &ProbeAccount,
) -> Result<(), ProbeError> {
    let config = UpstreamConfig {
        limits: Limits::default(),
        starttls: starttls.is_some(),
        forward: None,
    };
    let mut engine = Pop3Upstream::new(config, login_request(account));
    w.buf = relay_login!(w, engine, starttls);
    w.send(b"STAT\r\n", ProbeStep::Mailbox).await?;
    let stat = w.line(ProbeStep::Mailbox).await?;
    expect_ok(&stat, "+OK", ProbeStep::Mailbox)?;
    w.send(b"QUIT\r\n", ProbeStep::Logout).await?;
    let bye = w.line(ProbeStep::Logout).await?;
    expect_ok(&bye, "+OK", ProbeStep::Logout)
}

#[cfg(test)]
#[path = "conversation_tests.rs"]
mod tests;
