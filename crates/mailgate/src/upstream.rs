//! The way to a backend: resolve its name (TTL-aware, keeping the last good addresses when
//! DNS fails), connect (timeout, one retry on another address before credentials), optional
//! PROXY v2 header and TLS, then drive the protocol's upstream engine to replay the login.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use hickory_resolver::TokioResolver;
use mailgate_proto::UpstreamConfig;
use mailgate_proto::imap::ImapUpstream;
use mailgate_proto::pop3::Pop3Upstream;
use mailgate_proto::{
    ForwardInfo, Limits, LoginRequest, LoginVerdict, UpstreamAction, UpstreamError,
};
use mailgate_routing::{Backend, BackendTls, ForwardClient};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use crate::conn::Conn;
use crate::tls;
use mailgate_proto::Protocol;

/// Why a login relay failed before the backend gave a verdict. Every variant means
/// "unavailable" for the client; `signal` says what passive health should learn.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The backend has no port for this protocol.
    #[error("backend has no {0} port")]
    NoPort(&'static str),
    /// DNS gave nothing and no earlier answer is known.
    #[error("cannot resolve backend host: {0}")]
    Resolve(String),
    /// TCP connect failed on every address tried.
    #[error("connect failed: {0}")]
    Connect(io::Error),
    /// TCP connect timed out.
    #[error("connect timed out")]
    ConnectTimeout,
    /// No greeting within the greeting timeout.
    #[error("no greeting within the timeout")]
    GreetingTimeout,
    /// No verdict within the login timeout.
    #[error("login timed out")]
    LoginTimeout,
    /// TLS towards the backend failed.
    #[error("TLS to backend failed: {0}")]
    Tls(String),
    /// The backend broke the protocol.
    #[error("{0}")]
    Protocol(#[from] UpstreamError),
    /// Read/write failed or the backend closed.
    #[error("backend connection failed: {0}")]
    Io(io::Error),
}

impl RelayError {
    /// A short, stable label (logs, metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            RelayError::NoPort(_) => "no_port",
            RelayError::Resolve(_) => "resolve",
            RelayError::Connect(_) => "connect",
            RelayError::ConnectTimeout => "connect_timeout",
            RelayError::GreetingTimeout => "greeting_timeout",
            RelayError::LoginTimeout => "login_timeout",
            RelayError::Tls(_) => "tls",
            RelayError::Protocol(_) => "protocol",
            RelayError::Io(_) => "io",
        }
    }
}

/// Timeouts of one relay.
#[derive(Debug, Clone, Copy)]
pub struct RelayTimeouts {
    /// TCP connect (per address).
    pub connect: Duration,
    /// From connect to the greeting.
    pub greeting: Duration,
    /// From the greeting to the verdict.
    pub login: Duration,
}

/// A finished relay: the backend connection and its verdict.
#[derive(Debug)]
pub struct Relayed {
    /// The backend connection (spliced on success, dropped otherwise).
    pub conn: Conn,
    /// The backend's verdict.
    pub verdict: LoginVerdict,
    /// Bytes the backend sent after the verdict (for the client).
    pub remaining: Vec<u8>,
    /// Connect to verdict.
    pub latency: Duration,
}

/// Everything a relay needs besides the login itself.
#[derive(Debug)]
pub struct RelayRequest<'a> {
    /// The backend.
    pub backend: &'a Backend,
    /// IMAP or POP3.
    pub protocol: Protocol,
    /// Client address information (IMAP ID / XCLIENT / PROXY v2).
    pub forward: ForwardInfo,
    /// The real client and local addresses (PROXY v2).
    pub client_addr: SocketAddr,
    /// The address the client connected to.
    pub local_addr: SocketAddr,
    /// Timeouts.
    pub timeouts: RelayTimeouts,
    /// Protocol limits.
    pub limits: Limits,
}

enum Engine {
    Imap(ImapUpstream),
    Pop3(Pop3Upstream),
}

impl Engine {
    fn feed(&mut self, data: &[u8]) {
        match self {
            Engine::Imap(e) => e.feed(data),
            Engine::Pop3(e) => e.feed(data),
        }
    }
    fn next_action(&mut self) -> Result<Option<UpstreamAction>, UpstreamError> {
        match self {
            Engine::Imap(e) => e.next_action(),
            Engine::Pop3(e) => e.next_action(),
        }
    }
    fn tls_started(&mut self) {
        match self {
            Engine::Imap(e) => e.tls_started(),
            Engine::Pop3(e) => e.tls_started(),
        }
    }
    fn into_remaining(self) -> Vec<u8> {
        match self {
            Engine::Imap(e) => e.into_remaining(),
            Engine::Pop3(e) => e.into_remaining(),
        }
    }
}

/// Dials backends and relays logins. One per process; shared by sessions and probes.
pub struct Upstream {
    resolver: Option<TokioResolver>,
    last_good: DashMap<String, Vec<IpAddr>>,
    client_tls: DashMap<(Option<std::path::PathBuf>, bool), Arc<ClientConfig>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

impl Upstream {
    /// A dialer using the system's DNS configuration (falls back to the OS resolver when
    /// /etc/resolv.conf cannot be read).
    pub fn new() -> Self {
        let resolver = TokioResolver::builder_tokio()
            .ok()
            .and_then(|b| b.build().ok());
        Upstream {
            resolver,
            last_good: DashMap::new(),
            client_tls: DashMap::new(),
        }
    }

    /// Addresses of `host`; an IP literal is used as is.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, RelayError> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(vec![ip]);
        }
        let fresh: Result<Vec<IpAddr>, String> = match &self.resolver {
            Some(r) => r
                .lookup_ip(host)
                .await
                .map(|l| l.iter().collect())
                .map_err(|e| e.to_string()),
            None => tokio::net::lookup_host((host, 0))
                .await
                .map(|it| it.map(|a| a.ip()).collect())
                .map_err(|e| e.to_string()),
        };
        match fresh {
            Ok(ips) if !ips.is_empty() => {
                self.last_good.insert(host.to_string(), ips.clone());
                Ok(ips)
            }
            other => {
                let why = match other {
                    Err(e) => e,
                    Ok(_) => "no addresses".into(),
                };
                match self.last_good.get(host) {
                    Some(ips) => {
                        tracing::warn!(host, error = %why, "DNS failed; using the last good addresses");
                        Ok(ips.clone())
                    }
                    None => Err(RelayError::Resolve(why)),
                }
            }
        }
    }

    fn client_config(&self, backend: &Backend) -> Result<Arc<ClientConfig>, RelayError> {
        let key = (backend.tls_ca_file.clone(), backend.tls_verify);
        if let Some(cfg) = self.client_tls.get(&key) {
            return Ok(cfg.clone());
        }
        let cfg = tls::backend_client_config(backend.tls_ca_file.as_deref(), backend.tls_verify)
            .map_err(|e| RelayError::Tls(e.to_string()))?;
        self.client_tls.insert(key, cfg.clone());
        Ok(cfg)
    }

    async fn tls_connect(&self, backend: &Backend, tcp: TcpStream) -> Result<Conn, RelayError> {
        let cfg = self.client_config(backend)?;
        let name = backend
            .tls_server_name
            .clone()
            .unwrap_or_else(|| backend.host.clone());
        let name = ServerName::try_from(name).map_err(|e| RelayError::Tls(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| RelayError::Tls(e.to_string()))?;
        Ok(Conn::Tls(Box::new(tokio_rustls::TlsStream::Client(stream))))
    }

    /// STARTTLS upgrade of an already connected (boxed) stream, for probes.
    pub async fn tls_upgrade_boxed(
        &self,
        backend: &Backend,
        stream: mailgate_health::BoxStream,
    ) -> io::Result<mailgate_health::BoxStream> {
        let cfg = self
            .client_config(backend)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let name = backend
            .tls_server_name
            .clone()
            .unwrap_or_else(|| backend.host.clone());
        let name = ServerName::try_from(name).map_err(|e| io::Error::other(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, stream)
            .await?;
        Ok(Box::new(tls))
    }

    /// Open a TCP connection (and implicit TLS / PROXY header) to the backend.
    pub async fn dial(
        &self,
        backend: &Backend,
        protocol: Protocol,
        timeouts: RelayTimeouts,
        proxy: Option<(SocketAddr, SocketAddr)>,
    ) -> Result<Conn, RelayError> {
        let port = match protocol {
            Protocol::Imap => backend.imap_port,
            Protocol::Pop3 => backend.pop3_port,
        }
        .ok_or(RelayError::NoPort(protocol.as_str()))?;
        let ips = self.resolve(&backend.host).await?;
        let mut last_err = RelayError::ConnectTimeout;
        let mut tcp = None;
        // One retry on another address; nothing has been sent yet.
        for ip in ips.iter().take(2) {
            match timeout(timeouts.connect, TcpStream::connect((*ip, port))).await {
                Ok(Ok(s)) => {
                    tcp = Some(s);
                    break;
                }
                Ok(Err(e)) => last_err = RelayError::Connect(e),
                Err(_) => last_err = RelayError::ConnectTimeout,
            }
        }
        let Some(mut tcp) = tcp else {
            return Err(last_err);
        };
        crate::net::tune(&tcp);
        if let (ForwardClient::ProxyV2, Some((client, local))) = (backend.forward_client, proxy) {
            let header = crate::net::proxy_v2_header(client, local);
            tcp.write_all(&header).await.map_err(RelayError::Io)?;
        }
        if backend.tls == BackendTls::Implicit {
            return self.tls_connect(backend, tcp).await;
        }
        Ok(Conn::Plain(tcp))
    }

    /// Connect to the backend and replay `login`; returns the verdict and the connection.
    pub async fn relay(
        &self,
        req: RelayRequest<'_>,
        login: LoginRequest,
    ) -> Result<Relayed, RelayError> {
        let started = Instant::now();
        let backend = req.backend;
        let mut conn = self
            .dial(
                backend,
                req.protocol,
                req.timeouts,
                Some((req.client_addr, req.local_addr)),
            )
            .await?;
        let forward = match backend.forward_client {
            ForwardClient::Id => Some(req.forward),
            _ => None,
        };
        let config = UpstreamConfig {
            limits: req.limits.clone(),
            starttls: backend.tls == BackendTls::StartTls,
            forward,
        };
        let mut engine = match req.protocol {
            Protocol::Imap => Engine::Imap(ImapUpstream::new(config, login)),
            Protocol::Pop3 => Engine::Pop3(Pop3Upstream::new(config, login)),
        };
        let greeting_deadline = Instant::now() + req.timeouts.greeting;
        let mut login_deadline: Option<Instant> = None;
        let mut buf = vec![0u8; 4096];
        loop {
            match engine.next_action()? {
                Some(UpstreamAction::Send(bytes)) => {
                    login_deadline.get_or_insert_with(|| Instant::now() + req.timeouts.login);
                    conn.write_all(&bytes).await.map_err(RelayError::Io)?;
                    conn.flush().await.map_err(RelayError::Io)?;
                }
                Some(UpstreamAction::StartTls) => {
                    let Conn::Plain(tcp) = conn else {
                        return Err(RelayError::Protocol(UpstreamError::StartTlsRefused));
                    };
                    conn = self.tls_connect(backend, tcp).await?;
                    engine.tls_started();
                }
                Some(UpstreamAction::CredentialsNext) => {}
                Some(UpstreamAction::Done(verdict)) => {
                    return Ok(Relayed {
                        conn,
                        verdict,
                        remaining: engine.into_remaining(),
                        latency: started.elapsed(),
                    });
                }
                None => {
                    let (deadline, err) = match login_deadline {
                        None => (greeting_deadline, RelayError::GreetingTimeout),
                        Some(d) => (d, RelayError::LoginTimeout),
                    };
                    let n = match timeout_at(deadline, conn.read(&mut buf)).await {
                        Ok(Ok(0)) => {
                            return Err(RelayError::Io(io::ErrorKind::UnexpectedEof.into()));
                        }
                        Ok(Ok(n)) => n,
                        Ok(Err(e)) => return Err(RelayError::Io(e)),
                        Err(_) => return Err(err),
                    };
                    engine.feed(&buf[..n]);
                }
            }
        }
    }
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream::new()
    }
}
