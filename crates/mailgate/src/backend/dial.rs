//! Reaching a backend: resolve its name (TTL-aware, keeping the last good addresses when
//! DNS fails), connect (one retry on another address — nothing has been sent yet), the
//! PROXY v2 header where the backend wants one, and implicit TLS. Each step under its own
//! deadline.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use dashmap::DashMap;
use hickory_resolver::TokioResolver;
use mailgate_config::{Backend, BackendTls, ForwardClient};
use mailgate_proto::Protocol;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::error::{BackendError, Failure, Step};
use super::{Deadlines, Target};
use crate::conn::Conn;
use crate::tls;

/// Resolver, last good addresses and TLS client configurations, shared by every dial.
pub(super) struct Dialer {
    resolver: Option<TokioResolver>,
    last_good: DashMap<String, Vec<IpAddr>>,
    client_tls: DashMap<(Option<std::path::PathBuf>, bool), Arc<ClientConfig>>,
    /// mailgate's own listeners: never dialled (the loop guard).
    pub(super) own: super::own::OwnListeners,
}

impl Dialer {
    pub(super) fn new() -> Self {
        let resolver = TokioResolver::builder_tokio()
            .ok()
            .and_then(|b| b.build().ok());
        Dialer {
            resolver,
            last_good: DashMap::new(),
            client_tls: DashMap::new(),
            own: super::own::OwnListeners::default(),
        }
    }

    /// Addresses of `host`; an IP literal is used as is (no DNS, no timer).
    pub(super) async fn resolve(
        &self,
        host: &str,
        d: &Deadlines,
    ) -> Result<Vec<IpAddr>, BackendError> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(vec![ip]);
        }
        let lookup = async {
            match &self.resolver {
                Some(r) => r
                    .lookup_ip(host)
                    .await
                    .map(|l| l.iter().collect::<Vec<_>>())
                    .map_err(|e| e.to_string()),
                None => tokio::net::lookup_host((host, 0))
                    .await
                    .map(|it| it.map(|a| a.ip()).collect())
                    .map_err(|e| e.to_string()),
            }
        };
        let fresh = match timeout(d.resolve, lookup).await {
            Ok(Ok(ips)) if !ips.is_empty() => {
                self.last_good.insert(host.to_string(), ips.clone());
                return Ok(ips);
            }
            Ok(Ok(_)) => BackendError::new(Step::Resolve, Failure::Resolve("no addresses".into())),
            Ok(Err(e)) => BackendError::new(Step::Resolve, Failure::Resolve(e)),
            Err(_) => BackendError::new(Step::Resolve, Failure::Timeout(d.resolve)),
        };
        match self.last_good.get(host) {
            Some(ips) => {
                tracing::warn!(host, error = %fresh, "DNS failed; using the last good addresses");
                Ok(ips.clone())
            }
            None => Err(fresh),
        }
    }

    /// `ips` without the addresses that reach one of mailgate's own listeners; an error
    /// (refused before any connection) when none is left.
    fn not_own(
        &self,
        host: &str,
        port: u16,
        ips: Vec<IpAddr>,
    ) -> Result<Vec<IpAddr>, BackendError> {
        let own = self.own.get();
        if own.is_empty() {
            return Ok(ips);
        }
        let mut reached = None;
        let rest: Vec<IpAddr> = ips
            .into_iter()
            .filter(|ip| {
                let hit = super::own::reached(&own, SocketAddr::new(*ip, port));
                if hit.is_some() {
                    reached = hit;
                }
                hit.is_none()
            })
            .collect();
        match reached {
            Some((name, addr)) if rest.is_empty() => Err(BackendError::new(
                Step::Connect,
                Failure::Config(format!(
                    "{host} port {port} is mailgate's own listener listen.{name} ({addr}); not dialled"
                )),
            )),
            Some((name, addr)) => {
                tracing::warn!(host, port, listener = name, %addr, "skipping a backend address that is mailgate's own listener");
                Ok(rest)
            }
            None => Ok(rest),
        }
    }

    fn client_config(&self, backend: &Backend) -> Result<Arc<ClientConfig>, BackendError> {
        let key = (backend.tls_ca_file.clone(), backend.tls_verify);
        if let Some(cfg) = self.client_tls.get(&key) {
            return Ok(cfg.clone());
        }
        let cfg = tls::backend_client_config(backend.tls_ca_file.as_deref(), backend.tls_verify)
            .map_err(|e| BackendError::new(Step::Tls, Failure::Config(e.to_string())))?;
        self.client_tls.insert(key, cfg.clone());
        Ok(cfg)
    }

    /// The TLS handshake over `tcp` (implicit TLS, or after STARTTLS / STLS).
    pub(super) async fn handshake(
        &self,
        backend: &Backend,
        tcp: TcpStream,
        d: &Deadlines,
    ) -> Result<Conn, BackendError> {
        let cfg = self.client_config(backend)?;
        let name = backend
            .tls_server_name
            .clone()
            .unwrap_or_else(|| backend.host.clone());
        let name = ServerName::try_from(name)
            .map_err(|e| BackendError::new(Step::Tls, Failure::Config(e.to_string())))?;
        let connector = tokio_rustls::TlsConnector::from(cfg);
        match timeout(d.tls, connector.connect(name, tcp)).await {
            Ok(Ok(stream)) => Ok(Conn::Tls(Box::new(tokio_rustls::TlsStream::Client(stream)))),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(BackendError::new(Step::Tls, Failure::Tls(e.to_string())))
            }
            Ok(Err(e)) => Err(BackendError::io(Step::Tls, e)),
            Err(_) => Err(BackendError::new(Step::Tls, Failure::Timeout(d.tls))),
        }
    }

    /// Open a connection to the backend: TCP, the PROXY v2 header if configured, implicit
    /// TLS if configured.
    pub(super) async fn dial(&self, t: &Target<'_>) -> Result<Conn, BackendError> {
        let backend = t.backend;
        let d = &t.deadlines;
        let port = match t.protocol {
            Protocol::Imap => backend.imap_port,
            Protocol::Pop3 => backend.pop3_port,
        }
        .ok_or_else(|| {
            BackendError::new(
                Step::Connect,
                Failure::Config(format!("backend has no {} port", t.protocol.as_str())),
            )
        })?;
        let ips = self.resolve(&backend.host, d).await?;
        let ips = self.not_own(&backend.host, port, ips)?;
        let mut last_err = BackendError::new(Step::Connect, Failure::Timeout(d.connect));
        let mut tcp = None;
        for ip in ips.iter().take(2) {
            match timeout(d.connect, TcpStream::connect((*ip, port))).await {
                Ok(Ok(s)) => {
                    tcp = Some(s);
                    break;
                }
                Ok(Err(e)) => last_err = BackendError::io(Step::Connect, e),
                Err(_) => last_err = BackendError::new(Step::Connect, Failure::Timeout(d.connect)),
            }
        }
        let Some(mut tcp) = tcp else {
            return Err(last_err);
        };
        crate::net::tune(&tcp);
        if backend.forward_client == ForwardClient::ProxyV2 {
            // Sessions announce their client (its TLS and mailgate's session id as TLVs);
            // probes announce mailgate's own connection, so a backend that requires the
            // header accepts probes too.
            let header = match &t.proxy {
                Some(p) => crate::net::proxy_v2_header(
                    p.client,
                    p.local,
                    crate::net::ProxyTlvs {
                        client_tls: p.tls,
                        unique_id: Some(&p.session_id),
                    },
                ),
                None => match (tcp.local_addr(), tcp.peer_addr()) {
                    (Ok(l), Ok(p)) => {
                        crate::net::proxy_v2_header(l, p, crate::net::ProxyTlvs::default())
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        return Err(BackendError::io(Step::ProxyHeader, e));
                    }
                },
            };
            match timeout(d.write, tcp.write_all(&header)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(BackendError::io(Step::ProxyHeader, e)),
                Err(_) => {
                    return Err(BackendError::new(
                        Step::ProxyHeader,
                        Failure::Timeout(d.write),
                    ));
                }
            }
        }
        if backend.tls == BackendTls::Implicit {
            return self.handshake(backend, tcp, d).await;
        }
        Ok(Conn::Plain(tcp))
    }
}
