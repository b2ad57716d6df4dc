//! Listeners: the four public ones (IMAP, IMAPS, POP3, POP3S) and their accept loops.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::conn::Conn;
use crate::server::Shared;
use crate::tls::ServerTls;
use mailgate_proto::Protocol;

/// Which public listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// IMAP, plaintext with STARTTLS.
    Imap,
    /// IMAP over implicit TLS.
    Imaps,
    /// POP3, plaintext with STLS.
    Pop3,
    /// POP3 over implicit TLS.
    Pop3s,
}

impl ListenerKind {
    /// All kinds.
    pub const ALL: [ListenerKind; 4] = [
        ListenerKind::Imap,
        ListenerKind::Imaps,
        ListenerKind::Pop3,
        ListenerKind::Pop3s,
    ];

    /// Config key / metric label.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Imap => "imap",
            ListenerKind::Imaps => "imaps",
            ListenerKind::Pop3 => "pop3",
            ListenerKind::Pop3s => "pop3s",
        }
    }

    /// The protocol spoken.
    pub fn protocol(self) -> Protocol {
        match self {
            ListenerKind::Imap | ListenerKind::Imaps => Protocol::Imap,
            ListenerKind::Pop3 | ListenerKind::Pop3s => Protocol::Pop3,
        }
    }

    /// TLS from the first byte.
    pub fn implicit_tls(self) -> bool {
        matches!(self, ListenerKind::Imaps | ListenerKind::Pop3s)
    }
}

/// TLS handshake on an accepted connection (implicit TLS or after STARTTLS).
pub async fn accept_tls(tls: &ServerTls, kind: ListenerKind, tcp: TcpStream) -> io::Result<Conn> {
    let cfg = match kind.protocol() {
        Protocol::Imap => tls.imap.clone(),
        Protocol::Pop3 => tls.pop3.clone(),
    };
    let stream = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await?;
    Ok(Conn::Tls(Box::new(tokio_rustls::TlsStream::Server(stream))))
}

/// Bind a listener (IPv4 or IPv6; an IPv6 wildcard listener is IPv6-only so that an IPv4
/// listener on the same port can coexist).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
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
    socket.listen(1024)
}

/// Accept connections until shutdown starts; each session runs on the task tracker.
pub async fn accept_loop(shared: Arc<Shared>, kind: ListenerKind, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shared.shutdown.cancelled() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let shared2 = shared.clone();
                shared
                    .tracker
                    .spawn(crate::session::run(shared2, kind, tcp, peer));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = kind.name(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
