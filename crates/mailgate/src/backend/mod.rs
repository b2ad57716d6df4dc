//! The one client mailgate uses towards a backend, for client logins and health probes
//! alike: resolve → connect → PROXY v2 header → TLS (implicit) → greeting → capabilities →
//! [STARTTLS → TLS] → client-address forwarding → login replay → verdict.
//!
//! Every step has its own deadline ([`Deadlines`], from `limits:` for sessions and
//! `health.timeout` for probes), so no backend can hold a login — and the login-in-flight
//! permit the caller keeps for it — longer than the sum of the steps. The protocol itself
//! is spoken by mailgate-proto's sans-I/O upstream engines; this module only moves their
//! bytes and keeps the clock. Commands an engine queues back to back (a pipelined IMAP `ID`
//! and login, POP3 `XCLIENT`, `USER` and `PASS`) go out in one write, made when the engine
//! next waits for the backend.

mod dial;
mod error;
pub mod own;
#[cfg(test)]
mod pipeline_tests;

pub use error::{BackendError, Failure, Step};

use std::net::SocketAddr;
use std::time::Duration;

use mailgate_config::{Backend, BackendTls, LimitsConfig};
use mailgate_proto::imap::ImapUpstream;
use mailgate_proto::pop3::Pop3Upstream;
use mailgate_proto::{
    Capabilities, ForwardInfo, Limits, LoginRequest, LoginVerdict, Protocol, UpstreamAction,
    UpstreamConfig, UpstreamError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

use crate::conn::Conn;

/// The deadline of each step of a backend conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// DNS resolution of the backend's host.
    pub resolve: Duration,
    /// TCP connect, per address tried.
    pub connect: Duration,
    /// Each TLS handshake.
    pub tls: Duration,
    /// From the connection (after implicit TLS) to the greeting.
    pub greeting: Duration,
    /// Each write.
    pub write: Duration,
    /// Each wait for an answer after the greeting, the verdict included: from a write to
    /// the answers of everything it carried (pipelined commands share one wait).
    pub answer: Duration,
}

impl Deadlines {
    /// The deadlines of client logins (`limits:` in mailgate.yaml).
    pub fn from_limits(l: &LimitsConfig) -> Self {
        Deadlines {
            resolve: l.backend_resolve_timeout,
            connect: l.backend_connect_timeout,
            tls: l.backend_tls_timeout,
            greeting: l.backend_greeting_timeout,
            write: l.backend_write_timeout,
            answer: l.backend_login_timeout,
        }
    }

    /// The same deadline for every step (probes: `health.timeout`).
    pub fn uniform(d: Duration) -> Self {
        Deadlines {
            resolve: d,
            connect: d,
            tls: d,
            greeting: d,
            write: d,
            answer: d,
        }
    }
}

/// Which backend to talk to, and how.
#[derive(Debug)]
pub struct Target<'a> {
    /// The backend.
    pub backend: &'a Backend,
    /// IMAP or POP3.
    pub protocol: Protocol,
    /// The client side of the session, for a PROXY v2 header (`None` for probes: the
    /// header then announces mailgate's own connection and nothing else).
    pub proxy: Option<ProxyClient>,
    /// What to tell the backend about the client (IMAP ID / POP3 XCLIENT).
    pub forward: Option<ForwardInfo>,
    /// Protocol limits for the backend's answers.
    pub limits: Limits,
    /// Step deadlines.
    pub deadlines: Deadlines,
}

/// What a PROXY v2 header announces about a session's client: mailgate's own knowledge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyClient {
    /// The client's address.
    pub client: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// The TLS version of the client's connection (`PP2_TYPE_SSL`), `None` for plaintext.
    pub tls: Option<&'static str>,
    /// mailgate's session id (`PP2_TYPE_UNIQUE_ID`).
    pub session_id: String,
}

/// A finished login: the connection and the backend's verdict. `Debug` shows the length
/// of `remaining`, never the backend's bytes.
pub struct LoggedIn {
    /// The backend connection (spliced when accepted, dropped otherwise).
    pub conn: Conn,
    /// The backend's verdict.
    pub verdict: LoginVerdict,
    /// Bytes the backend sent after its verdict (for the client, or the probe).
    pub remaining: Vec<u8>,
    /// From sending the credentials to the verdict (the passive latency signal).
    pub latency: Duration,
    /// From starting to the verdict (`backend_login_duration_seconds`).
    pub total: Duration,
    /// The backend's capabilities as the login met them (after STARTTLS).
    pub capabilities: Option<Capabilities>,
}

impl std::fmt::Debug for LoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedIn")
            .field("conn", &self.conn)
            .field("verdict", &self.verdict)
            .field("remaining", &self.remaining.len())
            .field("latency", &self.latency)
            .field("total", &self.total)
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

/// Dials backends and replays logins. One per process, shared by sessions and probes.
pub struct BackendClient {
    dialer: dial::Dialer,
}

impl std::fmt::Debug for BackendClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendClient").finish_non_exhaustive()
    }
}

impl Default for BackendClient {
    fn default() -> Self {
        BackendClient::new()
    }
}

enum Engine {
    Imap(ImapUpstream),
    Pop3(Pop3Upstream),
}

impl Engine {
    fn new(protocol: Protocol, config: UpstreamConfig, login: LoginRequest) -> Self {
        match protocol {
            Protocol::Imap => Engine::Imap(ImapUpstream::new(config, login)),
            Protocol::Pop3 => Engine::Pop3(Pop3Upstream::new(config, login)),
        }
    }
    fn feed(&mut self, data: &[u8]) {
        match self {
            Engine::Imap(e) => e.feed(data),
            Engine::Pop3(e) => e.feed(data),
        }
    }
    fn next_action(&mut self) -> Result<Option<UpstreamAction>, UpstreamError> {
        match self {
            Engine::Imap(e) => e.next_action(),
            Engine::Pop3(e) => e.next_action(),
        }
    }
    fn tls_started(&mut self) {
        match self {
            Engine::Imap(e) => e.tls_started(),
            Engine::Pop3(e) => e.tls_started(),
        }
    }
    fn into_remaining(self) -> Vec<u8> {
        match self {
            Engine::Imap(e) => e.into_remaining(),
            Engine::Pop3(e) => e.into_remaining(),
        }
    }
    fn capabilities(&self) -> Option<Capabilities> {
        match self {
            Engine::Imap(e) => e.capabilities(),
            Engine::Pop3(e) => e.capabilities(),
        }
    }
}

/// Where a conversation stops.
enum Until {
    /// Before the credentials: the backend greeted and is ready for a login.
    Ready,
    /// At the verdict; with the backend's capabilities when `capabilities`.
    Verdict { capabilities: bool },
}

/// A backend that greeted and is ready for a login, and its capabilities.
#[derive(Debug)]
pub struct Ready {
    /// The connection, before any credentials.
    pub conn: Conn,
    /// The capabilities a login would meet (after STARTTLS).
    pub capabilities: Option<Capabilities>,
}

enum Reached {
    Ready(Ready),
    Verdict(LoggedIn),
}

impl BackendClient {
    /// A client using the system's DNS configuration (falls back to the OS resolver when
    /// /etc/resolv.conf cannot be read).
    pub fn new() -> Self {
        BackendClient::with_resolver(&mailgate_config::ResolverConfig::default())
    }

    /// A client resolving backend names as `resolver:` says (name servers, how long the
    /// last good addresses stand in for a failing DNS).
    pub fn with_resolver(resolver: &mailgate_config::ResolverConfig) -> Self {
        BackendClient {
            dialer: dial::Dialer::new(resolver),
        }
    }

    /// The addresses this process listens on: never dialled ([`own`]). Set once the
    /// listeners are bound.
    pub fn set_own_listeners(&self, listeners: Vec<own::Listener>) {
        self.dialer.own.set(listeners);
    }

    /// Log every backend of `table` whose literal address is one of the own listeners
    /// (startup and reload); logins routed there are refused without dialling.
    pub fn warn_own_listener_loops(&self, table: &mailgate_config::RoutingTable) {
        for l in own::literal_loops(table, &self.dialer.own.get()) {
            tracing::error!(
                backend = %l.backend,
                key = %format!("backends.{}.{}", l.backend, l.key),
                "{}",
                l.message()
            );
        }
    }

    /// Replay `login` to the backend and return its verdict with the connection.
    /// [`LoggedIn::capabilities`] stays `None`: a session has no use for them, and making
    /// them from the engine's list is work per login.
    pub async fn login(
        &self,
        target: Target<'_>,
        login: LoginRequest,
    ) -> Result<LoggedIn, BackendError> {
        self.login_until(target, login, false).await
    }

    /// [`login`](Self::login), and the backend's capabilities as the login met them (for
    /// probes, which record them).
    pub async fn login_with_capabilities(
        &self,
        target: Target<'_>,
        login: LoginRequest,
    ) -> Result<LoggedIn, BackendError> {
        self.login_until(target, login, true).await
    }

    async fn login_until(
        &self,
        target: Target<'_>,
        login: LoginRequest,
        capabilities: bool,
    ) -> Result<LoggedIn, BackendError> {
        match self
            .converse(target, login, Until::Verdict { capabilities })
            .await?
        {
            Reached::Verdict(v) => Ok(v),
            Reached::Ready(_) => Err(BackendError::new(
                Step::Login,
                Failure::Protocol(UpstreamError::Malformed),
            )),
        }
    }

    /// Go as far as a login would, without one: connect, greeting, capabilities,
    /// STARTTLS. For probes without a probe account. Nothing the engine queued for the
    /// login itself (forwarding pipelined with the credentials) is sent.
    pub async fn ready(&self, target: Target<'_>) -> Result<Ready, BackendError> {
        let placeholder = LoginRequest {
            credentials: mailgate_proto::Credentials::Password {
                authzid: None,
                authcid: String::new(),
                password: mailgate_proto::Secret::new(b""),
            },
        };
        match self.converse(target, placeholder, Until::Ready).await? {
            Reached::Ready(ready) => Ok(ready),
            Reached::Verdict(_) => Err(BackendError::new(
                Step::Setup,
                Failure::Protocol(UpstreamError::Malformed),
            )),
        }
    }

    async fn converse(
        &self,
        t: Target<'_>,
        login: LoginRequest,
        until: Until,
    ) -> Result<Reached, BackendError> {
        let started = Instant::now();
        let d = t.deadlines;
        let mut conn = self.dialer.dial(&t).await?;
        let config = UpstreamConfig {
            limits: t.limits.clone(),
            starttls: t.backend.tls == BackendTls::StartTls,
            forward: t.forward.clone(),
        };
        let mut engine = Engine::new(t.protocol, config, login);
        let mut step = Step::Greeting;
        let mut read_deadline = Instant::now() + d.greeting;
        let mut read_limit = d.greeting;
        let mut credentials_at = None;
        let mut buf = vec![0u8; 4096];
        // Commands queued and not yet written: flushed in one write before the next read
        // (or handshake, or return), so pipelined commands cost one `send`.
        let mut outgoing: Vec<u8> = Vec::new();
        loop {
            let action = engine
                .next_action()
                .map_err(|e| BackendError::new(step, Failure::Protocol(e)))?;
            if !outgoing.is_empty()
                && !matches!(
                    action,
                    Some(UpstreamAction::Send(_) | UpstreamAction::CredentialsNext)
                )
            {
                write(&mut conn, &outgoing, step, d.write).await?;
                outgoing.clear();
                read_deadline = Instant::now() + d.answer;
                read_limit = d.answer;
            }
            match action {
                Some(UpstreamAction::Send(bytes)) => {
                    if step == Step::Greeting {
                        step = Step::Setup;
                    }
                    if outgoing.is_empty() {
                        outgoing = bytes;
                    } else {
                        outgoing.extend_from_slice(&bytes);
                    }
                }
                Some(UpstreamAction::StartTls) => {
                    let Conn::Plain(tcp) = conn else {
                        return Err(BackendError::new(
                            Step::Tls,
                            Failure::Protocol(UpstreamError::StartTlsRefused),
                        ));
                    };
                    conn = self.dialer.handshake(t.backend, tcp, &d).await?;
                    engine.tls_started();
                }
                Some(UpstreamAction::CredentialsNext) => {
                    if let Until::Ready = until {
                        let capabilities = engine.capabilities();
                        return Ok(Reached::Ready(Ready { conn, capabilities }));
                    }
                    step = Step::Login;
                    credentials_at = Some(Instant::now());
                }
                Some(UpstreamAction::Done(verdict)) => {
                    let now = Instant::now();
                    let capabilities = match until {
                        Until::Verdict {
                            capabilities: false,
                        } => None,
                        _ => engine.capabilities(),
                    };
                    return Ok(Reached::Verdict(LoggedIn {
                        capabilities,
                        conn,
                        verdict,
                        remaining: engine.into_remaining(),
                        latency: now - credentials_at.unwrap_or(started),
                        total: now - started,
                    }));
                }
                None => {
                    let n = match timeout_at(read_deadline, conn.read(&mut buf)).await {
                        Ok(Ok(0)) => return Err(BackendError::new(step, Failure::Closed)),
                        Ok(Ok(n)) => n,
                        Ok(Err(e)) => return Err(BackendError::io(step, e)),
                        Err(_) => {
                            return Err(BackendError::new(step, Failure::Timeout(read_limit)));
                        }
                    };
                    engine.feed(&buf[..n]);
                }
            }
        }
    }
}

/// Write and flush `bytes` within `limit`.
pub async fn write(
    conn: &mut Conn,
    bytes: &[u8],
    step: Step,
    limit: Duration,
) -> Result<(), BackendError> {
    let io = async {
        conn.write_all(bytes).await?;
        conn.flush().await
    };
    match timeout(limit, io).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(BackendError::io(step, e)),
        Err(_) => Err(BackendError::new(step, Failure::Timeout(limit))),
    }
}
