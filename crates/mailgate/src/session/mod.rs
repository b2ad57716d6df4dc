//! One client session as a pipeline of stages, each in its own module, all working on one
//! [`Session`] value that owns the session's summary and logs it once:
//!
//! 1. [`transport`]: PROXY header from a trusted load balancer, the per-IP guard, implicit
//!    TLS (the same `handshake()` serves STARTTLS later).
//! 2. [`preauth`]: greeting and the pre-auth loop, the protocol engine's actions performed.
//! 3. [`login`]: route (the login normalised once), admission, the backend client, verdict.
//! 4. [`spliced`]: bytes both ways until either side or mailgate ends the session.
//!
//! This is the only place where client sockets meet the protocol engines.

mod context;
mod front;
mod login;
mod preauth;
mod session_metrics;
mod spliced;
mod transport;

pub use context::SessionContext;
pub use front::Front;
pub use session_metrics::{SessionGauge, SessionMetrics};

use std::net::SocketAddr;
use std::sync::Arc;

use mailgate_proto::CloseReason;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;

use crate::endpoint::ListenerKind;
use crate::net::text::{AddrText, SessionId};
use crate::runtime::Runtime;

/// What the session log line reports as its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    ClientClosed,
    Closed(CloseReason),
    PreauthTimeout,
    TlsFailed,
    Shutdown,
    Spliced,
    BackendClosed,
    SpliceIdle,
    SpliceError,
    Kicked,
    IoError,
    PerIpLimit,
    /// A process-wide cap (connections, pre-auth sessions, TLS handshakes).
    Busy,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::ClientClosed => "client_closed",
            Outcome::Closed(CloseReason::ClientLogout) => "logout",
            Outcome::Closed(_) => "protocol_close",
            Outcome::PreauthTimeout => "preauth_timeout",
            Outcome::TlsFailed => "tls_failed",
            Outcome::Shutdown => "shutdown",
            Outcome::Spliced => "spliced_closed",
            Outcome::BackendClosed => "backend_closed",
            Outcome::SpliceIdle => "spliced_idle",
            Outcome::SpliceError => "spliced_error",
            Outcome::Kicked => "kicked",
            Outcome::IoError => "io_error",
            Outcome::PerIpLimit => "per_ip_limit",
            Outcome::Busy => "server_busy",
        }
    }
}

/// Fields of the one summary event a session logs when it ends.
#[derive(Debug, Default)]
struct Summary {
    domain: Option<String>,
    /// The normalised login (for back-off; never logged: the domain is).
    user: Option<String>,
    backend: Option<String>,
    bytes_up: u64,
    bytes_down: u64,
    logins_failed: u32,
    close_detail: Option<&'static str>,
}

/// One session: its context, its configuration snapshot, where it came from, and what it
/// will report.
struct Session<'a> {
    ctx: &'a SessionContext,
    /// The configuration snapshot, taken once at accept.
    rt: Arc<Runtime>,
    kind: ListenerKind,
    id: u64,
    /// The client (after a PROXY header: the address it announced).
    peer: SocketAddr,
    /// The address the client connected to.
    local: SocketAddr,
    summary: Summary,
}

/// Serve one accepted connection until it closes.
pub async fn run(ctx: Arc<SessionContext>, kind: ListenerKind, tcp: TcpStream, peer: SocketAddr) {
    let id = ctx.lifecycle().next_session_id();
    // The id as backends see it (x-session-id, XCLIENT SESSION=, PROXY v2 unique id), so
    // mailgate's and the backend's log lines correlate.
    let span = tracing::info_span!("conn", listener = kind.name(), peer = %AddrText(peer), id = %SessionId(id));
    async move {
        let started = Instant::now();
        let _active = ctx.metrics().session_opened(kind);
        let mut session = Session {
            ctx: &ctx,
            rt: ctx.runtime(),
            kind,
            id,
            local: tcp.local_addr().unwrap_or(peer),
            peer,
            summary: Summary::default(),
        };
        let outcome = session.run(tcp).await;
        session.log(outcome, started);
    }
    .instrument(span)
    .await
}

impl Session<'_> {
    async fn run(&mut self, tcp: TcpStream) -> Outcome {
        // The transport, pre-auth and login stages are boxed and freed once the session is
        // spliced, so an idle spliced session keeps only the splice's small state.
        let opened = Box::pin(self.open(tcp)).await;
        let (conn, mut held) = match opened {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let spliced = match Box::pin(self.preauth(conn)).await {
            Ok(s) => s,
            Err(outcome) => return outcome,
        };
        // Logged in: no longer counted as a session before login.
        held.preauth = None;
        self.splice(spliced).await
    }

    fn log(&self, outcome: Outcome, started: Instant) {
        let s = &self.summary;
        tracing::info!(
            client = %AddrText(self.peer),
            domain = s.domain.as_deref().unwrap_or("-"),
            backend = s.backend.as_deref().unwrap_or("-"),
            bytes_up = s.bytes_up,
            bytes_down = s.bytes_down,
            duration_ms = started.elapsed().as_millis() as u64,
            failed_logins = s.logins_failed,
            outcome = outcome.as_str(),
            detail = s.close_detail.unwrap_or(""),
            "session closed"
        );
    }
}

#[cfg(test)]
mod tests {
    /// Every idle spliced session keeps its task's future for hours: the pre-auth and
    /// login states are boxed so that this stays small (docs/performance.md).
    #[tokio::test]
    async fn session_future_stays_small() {
        fn size_of<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let dir = tempfile::tempdir().expect("tempdir");
        let routing =
            "backends:\n  b:\n    host: 127.0.0.1\n    imap_port: 1\ndomains:\n  e.com: b\n";
        std::fs::write(dir.path().join("r.yaml"), routing).expect("write");
        let cfg = mailgate_config::Config::parse(
            "listen:\n  imap: 127.0.0.1:0\nrouting_file: r.yaml\n",
            &dir.path().join("m.yaml"),
        )
        .expect("config");
        let loaded = mailgate_config::RoutingTable::load(&cfg.routing_file).expect("routing");
        let proxy = crate::proxy::Proxy::new(cfg, loaded.table, None);
        let fut = super::run(
            proxy.session_context(),
            crate::endpoint::ListenerKind::Imap,
            tcp,
            addr,
        );
        let size = size_of(&fut);
        // 712 bytes in a debug build since the spliced phase is boxed apart (2,752 before).
        assert!(size <= 1024, "session future grew to {size} bytes");
    }
}
