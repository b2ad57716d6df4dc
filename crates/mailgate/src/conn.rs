//! One connection, plain or TLS, client- or backend-facing. The session driver and the
//! splice work on `Conn` so that STARTTLS can swap the transport underneath.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP connection, possibly wrapped in TLS. `Debug` shows the transport and the
/// addresses, never buffered bytes (a TLS stream holds decrypted data).
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP to a backend (tokio-rustls).
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
    /// A client's TLS: rustls' handshake, mailgate's record layer ([`crate::front_tls`]).
    FrontTls(Box<crate::front_tls::FrontTls>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tcp = self.tcp();
        f.debug_struct(if self.is_tls() { "Tls" } else { "Plain" })
            .field("local", &tcp.local_addr().ok())
            .field("peer", &tcp.peer_addr().ok())
            .finish()
    }
}

impl Conn {
    /// The TCP socket underneath (for readiness and socket options).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
            Conn::FrontTls(s) => s.tcp(),
        }
    }

    /// True when TLS is active.
    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_) | Conn::FrontTls(_))
    }

    /// Readiness for reading (used by the splice to avoid holding buffers while a session
    /// is idle): the TCP socket's, or at once when a client's TLS stream holds plaintext
    /// or a whole record already.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Conn::FrontTls(s) => s.poll_read_ready(cx),
            _ => self.tcp().poll_read_ready(cx),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::FrontTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::FrontTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::FrontTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::FrontTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
