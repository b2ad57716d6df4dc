//! A minimal IMAP client for the load generator and tests: connect (optionally from a given
//! source address), plain / STARTTLS / implicit TLS, tagged commands, literals counted and
//! discarded. Not a general client: it knows what the fakes and mailgate answer.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// Anything a session can run over: a TCP stream or a TLS stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP.
    None,
    /// Plain TCP, then `STARTTLS`.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// Builds a TLS connector trusting the certificates in `ca_file` (PEM), offering ALPN `imap`,
/// with the aws-lc-rs provider chosen explicitly.
pub fn tls_connector(ca_file: &Path) -> anyhow::Result<TlsConnector> {
    tls_connector_resuming(ca_file, true)
}

/// [`tls_connector`], with session resumption (rustls' in-memory client session store:
/// TLS 1.3 tickets, TLS 1.2 session IDs) on or off. Off makes every handshake a full one.
pub fn tls_connector_resuming(ca_file: &Path, resume: bool) -> anyhow::Result<TlsConnector> {
    tls_connector_with(ca_file, resume, SuiteOrder::Rustls)
}

/// The order a client lists its cipher suites in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SuiteOrder {
    /// rustls' own (AES-256-GCM first, like OpenSSL's).
    #[default]
    Rustls,
    /// AES-128-GCM first, then ChaCha20-Poly1305, then AES-256-GCM: NSS (Thunderbird,
    /// Firefox) on AES hardware; Apple's and Go's stacks also put AES-128-GCM first.
    Nss,
}

/// [`tls_connector_resuming`], listing the suites in `order`.
pub fn tls_connector_with(
    ca_file: &Path,
    resume: bool,
    order: SuiteOrder,
) -> anyhow::Result<TlsConnector> {
    let pem =
        std::fs::read(ca_file).with_context(|| format!("reading CA file {}", ca_file.display()))?;
    tls_connector_pem_with(&pem, resume, order)
        .with_context(|| format!("CA file {}", ca_file.display()))
}

/// [`tls_connector`] from PEM text in memory (e.g. a fake backend's `cert_pem()`).
pub fn tls_connector_pem(pem: &[u8]) -> anyhow::Result<TlsConnector> {
    tls_connector_pem_resuming(pem, true)
}

fn tls_connector_pem_resuming(pem: &[u8], resume: bool) -> anyhow::Result<TlsConnector> {
    tls_connector_pem_with(pem, resume, SuiteOrder::Rustls)
}

fn tls_connector_pem_with(
    pem: &[u8],
    resume: bool,
    order: SuiteOrder,
) -> anyhow::Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(cert.context("parsing CA certificate")?)
            .context("adding CA certificate")?;
    }
    anyhow::ensure!(!roots.is_empty(), "no CA certificate found");
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if order == SuiteOrder::Nss {
        // Stable: within each rank the provider's order (TLS 1.3 before 1.2) stays.
        use rustls::CipherSuite as C;
        provider.cipher_suites.sort_by_key(|s| match s.suite() {
            C::TLS13_AES_128_GCM_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
            C::TLS13_CHACHA20_POLY1305_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => 1,
            _ => 2,
        });
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"imap".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Server address (loopback only in this project's benchmarks).
    pub target: SocketAddr,
    /// Local address to bind before connecting (spreads ports over 127.0.0.x).
    pub source: Option<IpAddr>,
    /// Transport.
    pub tls: TlsMode,
    /// Required for STARTTLS and implicit TLS.
    pub connector: Option<TlsConnector>,
    /// Name checked against the server certificate.
    pub server_name: ServerName<'static>,
    /// Read buffer size: small for idle sessions, large for throughput.
    pub read_buffer: usize,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("target", &self.target)
            .field("source", &self.source)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    /// Plain TCP to `target`.
    pub fn plain(target: SocketAddr) -> Self {
        Self {
            target,
            source: None,
            tls: TlsMode::None,
            connector: None,
            server_name: ServerName::IpAddress(target.ip().into()),
            read_buffer: 4096,
        }
    }
}

/// The tagged completion of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `OK`, `NO` or `BAD`.
    pub status: String,
    /// The whole tagged line, without CRLF.
    pub line: String,
    /// Untagged lines seen before it (literal contents not included).
    pub untagged: Vec<String>,
    /// Total size of the literals received.
    pub literal_bytes: u64,
}

impl Response {
    /// `Ok(self)` if the status is OK, else an error naming the command.
    pub fn ok(self, what: &str) -> anyhow::Result<Self> {
        if self.status == "OK" {
            Ok(self)
        } else {
            bail!("{what}: {}", self.line)
        }
    }
}

/// One IMAP connection.
pub struct ImapClient {
    io: BufReader<Box<dyn Io>>,
    next_tag: u32,
    line: Vec<u8>,
    idle_tag: Option<String>,
}

impl std::fmt::Debug for ImapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapClient")
            .field("next_tag", &self.next_tag)
            .finish_non_exhaustive()
    }
}

async fn tcp_connect(opts: &ConnectOptions) -> anyhow::Result<TcpStream> {
    let socket = if opts.target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(src) = opts.source {
        socket
            .bind(SocketAddr::new(src, 0))
            .with_context(|| format!("binding {src}"))?;
    }
    let stream = socket
        .connect(opts.target)
        .await
        .with_context(|| format!("connecting to {}", opts.target))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn tls_wrap(opts: &ConnectOptions, io: Box<dyn Io>) -> anyhow::Result<Box<dyn Io>> {
    let connector = opts
        .connector
        .as_ref()
        .context("TLS requested without a CA file")?;
    let tls = connector
        .connect(opts.server_name.clone(), io)
        .await
        .context("TLS handshake")?;
    Ok(Box::new(tls))
}

impl ImapClient {
    /// Connects, reads the `* OK` greeting and upgrades to TLS as configured.
    pub async fn connect(opts: &ConnectOptions) -> anyhow::Result<Self> {
        let tcp: Box<dyn Io> = Box::new(tcp_connect(opts).await?);
        let io = match opts.tls {
            TlsMode::Implicit => tls_wrap(opts, tcp).await?,
            _ => tcp,
        };
        let mut c = Self {
            io: BufReader::with_capacity(opts.read_buffer, io),
            next_tag: 1,
            line: Vec::new(),
            idle_tag: None,
        };
        let greeting = c.read_line().await?;
        if !greeting.starts_with("* OK") {
            bail!("unexpected greeting: {greeting}");
        }
        if opts.tls == TlsMode::Starttls {
            c.command("STARTTLS").await?.ok("STARTTLS")?;
            if !c.io.buffer().is_empty() {
                bail!("bytes after STARTTLS OK");
            }
            let io = tls_wrap(opts, c.io.into_inner()).await?;
            c.io = BufReader::with_capacity(opts.read_buffer, io);
        }
        Ok(c)
    }

    async fn read_line(&mut self) -> anyhow::Result<String> {
        self.line.clear();
        let n = self.io.read_until(b'\n', &mut self.line).await?;
        if n == 0 {
            bail!("connection closed by server");
        }
        while matches!(self.line.last(), Some(b'\n' | b'\r')) {
            self.line.pop();
        }
        Ok(String::from_utf8_lossy(&self.line).into_owned())
    }

    /// Sends `TAG cmd` and reads up to its tagged completion.
    pub async fn command(&mut self, cmd: &str) -> anyhow::Result<Response> {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        let wire = format!("{tag} {cmd}\r\n");
        self.io.get_mut().write_all(wire.as_bytes()).await?;
        self.io.get_mut().flush().await?;
        self.read_response(&tag).await
    }

    async fn read_response(&mut self, tag: &str) -> anyhow::Result<Response> {
        let mut untagged = Vec::new();
        let mut literal_bytes = 0;
        loop {
            let line = self.read_line().await?;
            if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                let status = rest.split(' ').next().unwrap_or("").to_ascii_uppercase();
                return Ok(Response {
                    status,
                    line,
                    untagged,
                    literal_bytes,
                });
            }
            if let Some(n) = literal_len(&line) {
                let copied =
                    tokio::io::copy(&mut (&mut self.io).take(n), &mut tokio::io::sink()).await?;
                if copied < n {
                    bail!("connection closed inside a literal");
                }
                literal_bytes += n;
            }
            if untagged.len() < 64 {
                untagged.push(line);
            }
        }
    }

    /// LOGIN with quoted user and password; errors unless the server says OK.
    pub async fn login(&mut self, user: &str, password: &str) -> anyhow::Result<Response> {
        let cmd = format!("LOGIN {} {}", quote(user), quote(password));
        self.command(&cmd).await?.ok("LOGIN")
    }

    /// Sends IDLE and waits for the continuation.
    pub async fn start_idle(&mut self) -> anyhow::Result<()> {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        let wire = format!("{tag} IDLE\r\n");
        self.io.get_mut().write_all(wire.as_bytes()).await?;
        self.io.get_mut().flush().await?;
        loop {
            let line = self.read_line().await?;
            if line.starts_with('+') {
                self.idle_tag = Some(tag);
                return Ok(());
            }
            if line.starts_with(&tag) {
                bail!("IDLE refused: {line}");
            }
        }
    }

    /// Ends IDLE with `DONE` and reads the IDLE command's completion.
    pub async fn stop_idle(&mut self) -> anyhow::Result<Response> {
        let tag = self.idle_tag.take().context("not idling")?;
        self.io.get_mut().write_all(b"DONE\r\n").await?;
        self.io.get_mut().flush().await?;
        self.read_response(&tag).await
    }

    /// Waits until the server closes the connection (any data received is discarded).
    pub async fn wait_closed(&mut self) {
        let _ = tokio::io::copy(&mut self.io, &mut tokio::io::sink()).await;
    }
}

/// The size of a literal announced at the end of a response line, `{n}`.
fn literal_len(line: &str) -> Option<u64> {
    let rest = line.strip_suffix('}')?;
    rest[rest.rfind('{')? + 1..].parse().ok()
}

/// An IMAP quoted string.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_lengths_and_quoting() {
        assert_eq!(literal_len("* 1 FETCH (BODY[] {1024}"), Some(1024));
        assert_eq!(literal_len("* 1 EXISTS"), None);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
