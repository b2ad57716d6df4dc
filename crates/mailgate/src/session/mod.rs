//! One client session, top to bottom: transport → greeting → pre-auth loop → route →
//! admission → upstream login relay → splice → one summary event. This is the only place
//! where sockets meet the protocol engines.

mod front;
mod login;
mod spliced;

pub use front::Front;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailgate_proto::{CloseReason, FrontAction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tracing::Instrument;

use crate::conn::Conn;
use crate::listener::ListenerKind;
use crate::server::Shared;
use login::{LoginContext, LoginStep, login};
use spliced::{Spliced, splice};

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
        }
    }
}

/// Fields of the one summary event a session logs when it ends.
#[derive(Debug, Default)]
struct Summary {
    client: Option<SocketAddr>,
    domain: Option<String>,
    backend: Option<String>,
    bytes_up: u64,
    bytes_down: u64,
    logins_failed: u32,
    close_detail: Option<&'static str>,
}

/// Serve one accepted connection until it closes.
pub async fn run(shared: Arc<Shared>, kind: ListenerKind, tcp: TcpStream, peer: SocketAddr) {
    let id = shared.next_session_id();
    let span = tracing::info_span!("conn", listener = kind.name(), peer = %peer, id);
    async move {
        let started = Instant::now();
        let _active = shared.metrics.session_opened(kind.name());
        let mut summary = Summary::default();
        // The pre-auth phase is boxed and freed once the session is spliced, so an idle
        // spliced session keeps only the splice's small state.
        let outcome = match Box::pin(drive(&shared, kind, tcp, peer, id, &mut summary)).await {
            Ok((spliced, _ip_guard)) => splice(&shared, spliced, &mut summary).await,
            Err(outcome) => outcome,
        };
        tracing::info!(
            client = %summary.client.unwrap_or(peer),
            domain = summary.domain.as_deref().unwrap_or("-"),
            backend = summary.backend.as_deref().unwrap_or("-"),
            bytes_up = summary.bytes_up,
            bytes_down = summary.bytes_down,
            duration_ms = started.elapsed().as_millis() as u64,
            failed_logins = summary.logins_failed,
            outcome = outcome.as_str(),
            detail = summary.close_detail.unwrap_or(""),
            "session closed"
        );
    }
    .instrument(span)
    .await
}

async fn drive<'a>(
    shared: &'a Arc<Shared>,
    kind: ListenerKind,
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    summary: &mut Summary,
) -> Result<(Spliced, crate::client_limits::IpGuard<'a>), Outcome> {
    let local = tcp.local_addr().unwrap_or(peer);
    crate::net::tune(&tcp);
    let limits = shared.limits();
    let mut tcp = tcp;
    let mut peer = peer;
    if shared
        .config
        .listen
        .proxy_from
        .contains(&peer.ip().to_canonical())
    {
        // A trusted load balancer: the real client address comes in a PROXY v2 header.
        match timeout(
            limits.tls_handshake_timeout,
            crate::net::read_proxy_v2(&mut tcp),
        )
        .await
        {
            Ok(Ok(Some(client))) => {
                tracing::debug!(client = %client, "PROXY v2 header");
                peer = client;
                summary.client = Some(client);
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::info!(error = %e, "bad PROXY header from a trusted load balancer");
                summary.close_detail = Some("bad_proxy_header");
                return Err(Outcome::IoError);
            }
            Err(_) => {
                summary.close_detail = Some("proxy_header_timeout");
                return Err(Outcome::IoError);
            }
        }
    }
    let Some(_ip_guard) = shared.per_ip.acquire(peer.ip()) else {
        let msg: &[u8] = match kind.protocol() {
            mailgate_proto::Protocol::Imap => {
                b"* BYE [UNAVAILABLE] Too many connections from your address\r\n"
            }
            mailgate_proto::Protocol::Pop3 => {
                b"-ERR [SYS/TEMP] Too many connections from your address\r\n"
            }
        };
        let _ = timeout(Duration::from_secs(1), tcp.write_all(msg)).await;
        return Err(Outcome::PerIpLimit);
    };
    // One routing snapshot for the whole session.
    let table = shared.routing.current();
    let tls = shared.server_tls();
    let mut conn = if kind.implicit_tls() {
        let Some(tls) = tls.as_ref() else {
            return Err(Outcome::TlsFailed);
        };
        match timeout(
            limits.tls_handshake_timeout,
            Box::pin(crate::listener::accept_tls(tls, kind, tcp)),
        )
        .await
        {
            Ok(Ok(c)) => c,
            _ => return Err(Outcome::TlsFailed),
        }
    } else {
        Conn::Plain(tcp)
    };
    let config = shared.front_config(kind, tls.is_some());
    let mut front = Front::new(kind.protocol(), config, conn.is_tls());
    if conn.write_all(&front.greeting()).await.is_err() {
        return Err(Outcome::IoError);
    }
    let deadline = Instant::now() + limits.preauth_timeout;
    let mut buf = vec![0u8; 4096];
    let mut out: Vec<u8> = Vec::new();
    loop {
        while let Some(action) = front.next_action() {
            match action {
                FrontAction::Send(bytes) => out.extend_from_slice(&bytes),
                FrontAction::Close(reason) => {
                    let _ = flush(&mut conn, &mut out).await;
                    let _ = timeout(Duration::from_secs(2), conn.shutdown()).await;
                    summary.close_detail = Some(reason.as_str());
                    return Err(Outcome::Closed(reason));
                }
                FrontAction::StartTls => {
                    if flush(&mut conn, &mut out).await.is_err() {
                        return Err(Outcome::IoError);
                    }
                    let (Conn::Plain(tcp), Some(tls)) = (conn, tls.as_ref()) else {
                        return Err(Outcome::TlsFailed);
                    };
                    conn = match timeout(
                        limits.tls_handshake_timeout,
                        Box::pin(crate::listener::accept_tls(tls, kind, tcp)),
                    )
                    .await
                    {
                        Ok(Ok(c)) => c,
                        _ => return Err(Outcome::TlsFailed),
                    };
                    front.tls_started();
                }
                FrontAction::Login(req) => {
                    if flush(&mut conn, &mut out).await.is_err() {
                        return Err(Outcome::IoError);
                    }
                    let ctx = LoginContext {
                        shared,
                        table: &table,
                        kind,
                        peer,
                        local,
                        id,
                        client_id: front.client_id(),
                    };
                    // Boxed: the relay's futures (DNS, connect, TLS) are large and must not
                    // enlarge the state every idle spliced session keeps. The client is
                    // watched meanwhile: one that leaves ends the login at once, and with it
                    // the login's permit (its place in the backend's budget).
                    let step = tokio::select! {
                        step = Box::pin(login(ctx, req, summary)) => step,
                        () = client_gone(&mut conn, &mut front, &mut buf) => {
                            return Err(Outcome::ClientClosed);
                        }
                    };
                    match step {
                        LoginStep::Spliced(logged_in, slot) => {
                            let mut to_client = front.login_result(logged_in.verdict.clone());
                            to_client.extend_from_slice(&logged_in.remaining);
                            let to_backend = front.into_remaining();
                            // The pre-auth read buffer must not live on for the whole
                            // spliced session: idle sessions hold no buffers.
                            drop(buf);
                            drop(out);
                            let spliced = Spliced {
                                protocol: kind.protocol(),
                                client: conn,
                                logged_in,
                                to_client,
                                to_backend,
                                slot,
                            };
                            return Ok((spliced, _ip_guard));
                        }
                        LoginStep::Answer(verdict) => {
                            if step_refused(&verdict) {
                                // Wrong password and unknown domain look alike, delay included.
                                summary.logins_failed += 1;
                                shared.auth_failures.record(peer.ip());
                                sleep(limits.auth_failure_delay).await;
                            }
                            out.extend_from_slice(&front.login_result(verdict));
                        }
                    }
                }
            }
        }
        if flush(&mut conn, &mut out).await.is_err() {
            return Err(Outcome::IoError);
        }
        let read = tokio::select! {
            r = conn.read(&mut buf) => r,
            _ = sleep_until(deadline) => {
                let _ = timeout(Duration::from_secs(2), conn.write_all(&front.timeout_bye())).await;
                return Err(Outcome::PreauthTimeout);
            }
            _ = shared.shutdown.cancelled() => {
                let _ = timeout(Duration::from_secs(2), conn.write_all(&front.shutdown_bye())).await;
                let _ = timeout(Duration::from_secs(1), conn.shutdown()).await;
                return Err(Outcome::Shutdown);
            }
        };
        match read {
            Ok(0) => return Err(Outcome::ClientClosed),
            Ok(n) => front.feed(&buf[..n]),
            Err(_) => return Err(Outcome::IoError),
        }
    }
}

/// True for the answers that carry the failed-login penalties: refused credentials and
/// unknown domains, never the backend's own trouble.
fn step_refused(verdict: &mailgate_proto::LoginVerdict) -> bool {
    use mailgate_proto::LoginVerdict;
    matches!(
        verdict,
        LoginVerdict::Rejected(_) | LoginVerdict::AuthFailed
    )
}

/// Resolves when the client closes its connection (or it fails) while a login is in
/// flight; whatever it pipelines meanwhile goes to the front engine, which keeps it.
async fn client_gone(conn: &mut Conn, front: &mut Front, buf: &mut [u8]) {
    loop {
        match conn.read(buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => front.feed(&buf[..n]),
        }
    }
}

async fn flush(conn: &mut Conn, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        conn.write_all(out).await?;
        out.clear();
    }
    conn.flush().await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
        let shared =
            crate::server::Shared::new(cfg, Arc::new(mailgate_config::Routing::new(loaded)), None);
        let fut = super::run(shared, crate::listener::ListenerKind::Imap, tcp, addr);
        let size = size_of(&fut);
        assert!(size <= 3072, "session future grew to {size} bytes");
    }
}
