//! The transport stage: the PROXY v2 header from a trusted load balancer (the real client
//! address), the per-IP guard, and the TLS handshake — one [`handshake`] for implicit TLS
//! and for STARTTLS / STLS.

use std::time::Duration;

use mailgate_proto::notices::{ConnectionRefusal, connection_refused};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{Outcome, Session};
use crate::client_limits::IpGuard;
use crate::conn::Conn;
use crate::endpoint::ListenerKind;
use crate::runtime::Runtime;

impl<'a> Session<'a> {
    /// Accepted TCP → the client's transport, counted against its address.
    pub(super) async fn open(
        &mut self,
        mut tcp: TcpStream,
    ) -> Result<(Conn, IpGuard<'a>), Outcome> {
        crate::net::tune(&tcp);
        let limits = &self.rt.limits;
        if self.rt.proxy_from.contains(&self.peer.ip().to_canonical()) {
            match timeout(
                limits.tls_handshake_timeout,
                crate::net::read_proxy_v2(&mut tcp),
            )
            .await
            {
                Ok(Ok(Some(client))) => {
                    tracing::debug!(client = %client, "PROXY v2 header");
                    self.peer = client;
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "bad PROXY header from a trusted load balancer");
                    self.summary.close_detail = Some("bad_proxy_header");
                    return Err(Outcome::IoError);
                }
                Err(_) => {
                    self.summary.close_detail = Some("proxy_header_timeout");
                    return Err(Outcome::IoError);
                }
            }
        }
        let ctx: &'a super::SessionContext = self.ctx;
        let Some(guard) = ctx.clients().admit(self.peer.ip()) else {
            let msg =
                connection_refused(self.kind.protocol(), ConnectionRefusal::TooManyFromAddress);
            let _ = timeout(Duration::from_secs(1), tcp.write_all(msg)).await;
            return Err(Outcome::PerIpLimit);
        };
        let conn = if self.kind.implicit_tls() {
            handshake(&self.rt, self.kind, tcp).await?
        } else {
            Conn::Plain(tcp)
        };
        Ok((conn, guard))
    }
}

/// The TLS handshake with the client, under `limits.tls_handshake_timeout`: certificate by
/// SNI, strict ALPN (`imap` / `pop3`). Implicit TLS and STARTTLS / STLS alike.
pub(super) async fn handshake(
    rt: &Runtime,
    kind: ListenerKind,
    tcp: TcpStream,
) -> Result<Conn, Outcome> {
    let Some(tls) = rt.tls.as_ref() else {
        return Err(Outcome::TlsFailed);
    };
    let cfg = match kind.protocol() {
        mailgate_proto::Protocol::Imap => tls.imap.clone(),
        mailgate_proto::Protocol::Pop3 => tls.pop3.clone(),
    };
    let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp);
    match timeout(rt.limits.tls_handshake_timeout, Box::pin(accept)).await {
        Ok(Ok(stream)) => Ok(Conn::Tls(Box::new(tokio_rustls::TlsStream::Server(stream)))),
        _ => Err(Outcome::TlsFailed),
    }
}
