//! The transport stage: the process-wide caps (connections, sessions before login), the
//! PROXY v1 or v2 header from a trusted load balancer (the real client address), the per-IP
//! guard, and the TLS handshake — one [`Session::handshake`] for implicit TLS and for
//! STARTTLS / STLS, under the cap on concurrent handshakes (over it, a connection waits for
//! a slot within its handshake deadline).

use std::time::Duration;

use mailgate_proto::notices::{ConnectionRefusal, connection_refused};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{Outcome, Session};
use crate::client_limits::{CapGuard, IpGuard};
use crate::conn::Conn;
use crate::metrics::ConnRefusal;

/// What a session holds while it is open: its place under the connection cap and the
/// per-IP limit, and (until it is spliced) under the pre-auth cap.
pub(super) struct Held<'a> {
    pub(super) _connection: CapGuard<'a>,
    pub(super) _ip: IpGuard<'a>,
    pub(super) preauth: Option<CapGuard<'a>>,
}

impl<'a> Session<'a> {
    /// Accepted TCP → the client's transport, counted against the caps and its address.
    pub(super) async fn open(&mut self, mut tcp: TcpStream) -> Result<(Conn, Held<'a>), Outcome> {
        let ctx: &'a super::SessionContext = self.ctx;
        let Some(connection) = ctx.clients().connection() else {
            let cap = self.connection_cap();
            return Err(self.refuse(tcp, cap).await);
        };
        let limits = &self.rt.limits;
        if self.rt.proxy_from.contains(&self.peer.ip().to_canonical()) {
            match timeout(
                limits.tls_handshake_timeout,
                crate::proxy_header::read_inbound(&mut tcp),
            )
            .await
            {
                Ok(Ok(header)) => {
                    let version = header.version.as_str();
                    if let Some(client) = header.client {
                        tracing::debug!(client = %client, version, "PROXY header");
                        self.peer = client;
                    }
                }
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
        let Some(ip) = ctx.clients().admit(self.peer.ip()) else {
            return Err(self.refuse(tcp, ConnRefusal::PerIp).await);
        };
        let Some(preauth) = ctx.clients().preauth() else {
            return Err(self.refuse(tcp, ConnRefusal::MaxPreauth).await);
        };
        let conn = if self.kind.implicit_tls() {
            self.handshake(tcp).await?
        } else {
            Conn::Plain(tcp)
        };
        Ok((
            conn,
            Held {
                _connection: connection,
                _ip: ip,
                preauth: Some(preauth),
            },
        ))
    }

    /// Which connection cap a refused connection met: `limits.max_connections`, or the
    /// lower one the open-file limit sets (`ClientLimits` keeps the lower of the two).
    fn connection_cap(&self) -> ConnRefusal {
        let configured = self.rt.limits.max_connections;
        if configured != 0 && configured <= self.ctx.clients().max_connections() {
            ConnRefusal::MaxConnections
        } else {
            ConnRefusal::OpenFiles
        }
    }

    /// Refuse before the greeting: one line (`* BYE [UNAVAILABLE]` / `-ERR [SYS/TEMP]`),
    /// written under a short deadline, then close; counted by reason.
    async fn refuse(&mut self, mut tcp: TcpStream, why: ConnRefusal) -> Outcome {
        self.ctx.metrics().refused_connection(why);
        self.summary.close_detail = Some(why.as_str());
        let notice = match why {
            ConnRefusal::PerIp => ConnectionRefusal::TooManyFromAddress,
            _ => ConnectionRefusal::ServerBusy,
        };
        // Implicit TLS: no plaintext line before the handshake, just the close.
        if !self.kind.implicit_tls() {
            let msg = connection_refused(self.kind.protocol(), notice);
            let _ = timeout(Duration::from_secs(1), tcp.write_all(msg)).await;
        }
        match why {
            ConnRefusal::PerIp => Outcome::PerIpLimit,
            _ => Outcome::Busy,
        }
    }

    /// The TLS handshake with the client, under `limits.tls_handshake_timeout` and the cap
    /// on concurrent handshakes: certificate by SNI, strict ALPN (`imap` / `pop3`).
    /// Implicit TLS and STARTTLS / STLS alike.
    pub(super) async fn handshake(&mut self, tcp: TcpStream) -> Result<Conn, Outcome> {
        let Some(tls) = self.rt.tls.clone() else {
            return Err(Outcome::TlsFailed);
        };
        // One deadline for the wait for a handshake slot and the handshake itself.
        let deadline = tokio::time::Instant::now() + self.rt.limits.tls_handshake_timeout;
        let Some(_slot) = self.ctx.clients().handshake_within(deadline).await else {
            self.ctx
                .metrics()
                .refused_connection(ConnRefusal::MaxTlsHandshakes);
            self.summary.close_detail = Some(ConnRefusal::MaxTlsHandshakes.as_str());
            return Err(Outcome::TlsFailed);
        };
        let cfg = match self.kind.protocol() {
            mailgate_proto::Protocol::Imap => tls.imap.clone(),
            mailgate_proto::Protocol::Pop3 => tls.pop3.clone(),
        };
        let accept = crate::front_tls::accept(tcp, cfg);
        let failed = match tokio::time::timeout_at(deadline, Box::pin(accept)).await {
            Ok(Ok(stream)) => return Ok(Conn::FrontTls(Box::new(stream))),
            Ok(Err(e)) => super::session_metrics::tls_failure(&e),
            Err(_) => crate::metrics::TlsFailure::Timeout,
        };
        self.ctx.metrics().tls_handshake_failed(self.kind, failed);
        self.summary.close_detail = Some(failed.as_str());
        Err(Outcome::TlsFailed)
    }
}
