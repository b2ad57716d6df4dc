//! Reaching a backend: resolve its name (TTL-aware; when DNS fails, the last good addresses
//! stand in until `resolver.keep_last_good` after their TTL ran out), connect (one retry on
//! another address — nothing has been sent yet), the PROXY v2 header where the backend
//! wants one, and implicit TLS. Each step under its own deadline.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig as DnsConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use mailgate_config::{Backend, BackendTls, ForwardClient, ResolverConfig};
use mailgate_proto::Protocol;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use super::error::{BackendError, Failure, Step};
use super::{Deadlines, Target};
use crate::conn::Conn;
use crate::tls;

/// A host's last good answer and until when it may stand in for a failing DNS.
#[derive(Debug, Clone)]
struct LastGood {
    ips: Vec<IpAddr>,
    /// The answer's TTL end plus `keep_last_good`.
    usable_until: Instant,
}

/// Resolver, last good addresses and TLS client configurations, shared by every dial.
pub(super) struct Dialer {
    resolver: Option<TokioResolver>,
    keep_last_good: Duration,
    last_good: DashMap<String, LastGood>,
    client_tls: DashMap<(Option<std::path::PathBuf>, bool), Arc<ClientConfig>>,
    /// mailgate's own listeners: never dialled (the loop guard).
    pub(super) own: super::own::OwnListeners,
}

/// The resolver of `cfg`: its name servers (UDP, TCP for truncated answers), or the
/// system's configuration when it names none. `None` (the OS resolver is used) when the
/// system's configuration cannot be read.
fn build_resolver(cfg: &ResolverConfig) -> Option<TokioResolver> {
    if cfg.nameservers.is_empty() {
        return TokioResolver::builder_tokio()
            .ok()
            .and_then(|b| b.build().ok());
    }
    let servers = cfg
        .nameservers
        .iter()
        .map(|addr| {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            ns
        })
        .collect();
    let config = DnsConfig::from_parts(None, Vec::new(), servers);
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    // Only the configured servers answer: no /etc/hosts beside them.
    builder.options_mut().use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    builder.build().ok()
}

impl Dialer {
    pub(super) fn new(cfg: &ResolverConfig) -> Self {
        let resolver = build_resolver(cfg);
        if resolver.is_none() {
            tracing::warn!("DNS resolver not available; using the operating system's resolver");
        }
        Dialer {
            resolver,
            keep_last_good: cfg.keep_last_good,
            last_good: DashMap::new(),
            client_tls: DashMap::new(),
            own: super::own::OwnListeners::default(),
        }
    }

    /// Addresses of `host`; an IP literal is used as is (no DNS, no timer). When DNS fails,
    /// the last good answer while it is usable (its TTL end plus `keep_last_good`).
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
                    .map(|l| (l.iter().collect::<Vec<_>>(), Some(l.valid_until())))
                    .map_err(|e| e.to_string()),
                None => tokio::net::lookup_host((host, 0))
                    .await
                    .map(|it| (it.map(|a| a.ip()).collect(), None))
                    .map_err(|e| e.to_string()),
            }
        };
        let fresh = match timeout(d.resolve, lookup).await {
            Ok(Ok((ips, valid_until))) if !ips.is_empty() => {
                let ttl_end = valid_until.map_or_else(Instant::now, Instant::from_std);
                self.remember(host, &ips, ttl_end);
                return Ok(ips);
            }
            Ok(Ok(_)) => BackendError::new(Step::Resolve, Failure::Resolve("no addresses".into())),
            Ok(Err(e)) => BackendError::new(Step::Resolve, Failure::Resolve(e)),
            Err(_) => BackendError::new(Step::Resolve, Failure::Timeout(d.resolve)),
        };
        self.fall_back(host, fresh, Instant::now())
    }

    /// Keep `ips` as the last good answer of `host`, usable until `keep_last_good` after
    /// `ttl_end`.
    fn remember(&self, host: &str, ips: &[IpAddr], ttl_end: Instant) {
        let entry = LastGood {
            ips: ips.to_vec(),
            usable_until: ttl_end + self.keep_last_good,
        };
        self.last_good.insert(host.to_string(), entry);
    }

    /// DNS failed with `fresh`: the last good answer of `host` if it is still usable at
    /// `now`, else `fresh` (and the expired answer is forgotten).
    fn fall_back(
        &self,
        host: &str,
        fresh: BackendError,
        now: Instant,
    ) -> Result<Vec<IpAddr>, BackendError> {
        let Some(last) = self.last_good.get(host).map(|e| e.clone()) else {
            return Err(fresh);
        };
        if now <= last.usable_until {
            let left = last.usable_until.saturating_duration_since(now);
            tracing::warn!(host, error = %fresh, usable_for_ms = left.as_millis() as u64, "DNS failed; using the last good addresses");
            return Ok(last.ips);
        }
        self.last_good
            .remove_if(host, |_, e| e.usable_until == last.usable_until);
        tracing::warn!(host, error = %fresh, "DNS failed and the last good addresses expired (resolver.keep_last_good); refusing");
        Err(fresh)
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
        crate::net::tune_backend(&tcp);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dialer(keep: Duration) -> Dialer {
        Dialer::new(&ResolverConfig {
            nameservers: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
            keep_last_good: keep,
        })
    }

    fn failure() -> BackendError {
        BackendError::new(Step::Resolve, Failure::Resolve("no answer".into()))
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_good_answer_stands_in_until_keep_last_good_after_its_ttl() {
        let d = dialer(Duration::from_secs(5));
        let ip: IpAddr = [192, 0, 2, 7].into();
        let ttl_end = Instant::now() + Duration::from_secs(2);
        d.remember("mail.test", &[ip], ttl_end);
        let at = |s: u64| ttl_end + Duration::from_secs(s);
        assert_eq!(
            d.fall_back("mail.test", failure(), at(0)).ok(),
            Some(vec![ip])
        );
        assert_eq!(
            d.fall_back("mail.test", failure(), at(5)).ok(),
            Some(vec![ip])
        );
        let err = d.fall_back("mail.test", failure(), at(6));
        assert!(matches!(err, Err(e) if e.step == Step::Resolve));
        // Forgotten once expired: a later failure has nothing to fall back on.
        assert!(d.fall_back("mail.test", failure(), at(1)).is_err());
        assert!(d.fall_back("other.test", failure(), at(0)).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn keep_zero_ends_at_the_ttl_and_a_fresh_answer_renews() {
        let d = dialer(Duration::ZERO);
        let (a, b): (IpAddr, IpAddr) = ([192, 0, 2, 1].into(), [192, 0, 2, 2].into());
        let t0 = Instant::now();
        d.remember("m.test", &[a], t0 + Duration::from_secs(1));
        assert!(
            d.fall_back("m.test", failure(), t0 + Duration::from_secs(1))
                .is_ok()
        );
        assert!(
            d.fall_back("m.test", failure(), t0 + Duration::from_secs(2))
                .is_err()
        );
        d.remember("m.test", &[b], t0 + Duration::from_secs(10));
        let got = d.fall_back("m.test", failure(), t0 + Duration::from_secs(10));
        assert_eq!(got.ok(), Some(vec![b]));
    }

    #[tokio::test]
    async fn an_ip_literal_needs_no_dns() {
        let d = dialer(Duration::ZERO);
        let deadlines = Deadlines::from_limits(&mailgate_config::LimitsConfig::default());
        let ips = d.resolve("[::1]", &deadlines).await.ok();
        assert_eq!(ips, Some(vec![IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])]));
    }
}
