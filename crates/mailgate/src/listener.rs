//! Binding the listeners, and the accept loop that starts one session per connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use crate::endpoint::ListenerKind;
use crate::session::SessionContext;

/// Bind a listener (IPv4 or IPv6; an IPv6 wildcard listener is IPv6-only so that an IPv4
/// listener on the same port can coexist).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    // A socket handed over by the process this one replaces (or by systemd) stays open.
    // Its socket options are set again: systemd's or an older binary's may differ.
    if let Some(inherited) = crate::upgrade::inherit::take(addr) {
        let listener = inherited?;
        crate::net::tune_listener(&listener)?;
        return Ok(listener);
    }
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => {
            let s = tokio::net::TcpSocket::new_v6()?;
            socket2::SockRef::from(&s).set_only_v6(true)?;
            s
        }
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    // Inherited by every accepted connection: no per-connection setsockopt.
    crate::net::tune_listener(&listener)?;
    Ok(listener)
}

/// Accept connections until shutdown starts; each session runs on the task tracker.
pub async fn accept_loop(ctx: Arc<SessionContext>, kind: ListenerKind, listener: TcpListener) {
    // Offered to a binary upgrade's new process while this loop runs.
    let listener = Arc::new(listener);
    crate::upgrade::inherit::offer(kind.name(), &listener);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = ctx.lifecycle().accepting_stopped() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let session = crate::session::run(ctx.clone(), kind, tcp, peer);
                ctx.lifecycle().spawn_session(session);
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = kind.name(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
