//! The admin HTTP server: HTTP/1.1 with hyper, a header-read timeout, a cap on concurrent
//! connections and a time limit per connection, and graceful shutdown.
//!
//! It keeps answering (so `/metrics` shows the drain) through the proxy's shutdown grace;
//! `/readyz` says 503 from the moment shutdown starts. It stops when the proxy's shutdown
//! sequence is over ([`super::AdminHandle::stop`]).

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::routes::{self, AdminState, Surface};

/// Time a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection (keep-alive included).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Concurrent connections per listener; more are closed at once.
const MAX_CONNECTIONS: usize = 128;
/// How long in-flight requests may finish after stop.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Serve `listener` until `stop` is cancelled, then let open requests finish briefly.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    surface: Surface,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let name = match surface {
        Surface::Admin => "admin",
        Surface::Public => "status",
    };
    // Offered to a binary upgrade's new process while this server runs.
    let listener = std::sync::Arc::new(listener);
    crate::upgrade::inherit::offer(name, &listener);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(listener = name, %peer, "too many admin connections; closing");
            continue;
        };
        let state = state.clone();
        let service = service_fn(move |req| routes::handle(state.clone(), surface, peer, req));
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(16 * 1024)
            .serve_connection(TokioIo::new(tcp), service);
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, watched).await {
                tracing::debug!(listener = name, %peer, error = %e, "admin connection error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(STOP_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!(listener = name, "admin connections cut off at stop");
    }
}
