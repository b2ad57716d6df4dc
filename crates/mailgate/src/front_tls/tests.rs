//! The record layer against a real rustls client (buffered `ClientConnection`), over an
//! in-memory duplex whose server end delivers reads in random or one-byte fragments.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, aws_lc_rs::cipher_suite as cs};
use rustls::pki_types::ServerName;
use rustls::{
    AlertDescription, ClientConfig, ClientConnection, HandshakeKind, ProtocolVersion,
    RootCertStore, SupportedCipherSuite,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use super::{FrontTls, accept};

#[path = "tests_faults.rs"]
mod faults;

/// How the server's reads arrive.
#[derive(Clone, Copy, Debug)]
pub(super) enum Frag {
    Whole,
    Random,
    Bytewise,
}

/// The server end: every read returns at most a few bytes (random, or one).
pub(super) struct Trickle {
    io: DuplexStream,
    frag: Frag,
    rng: fastrand::Rng,
}

impl AsyncRead for Trickle {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let max = match this.frag {
            Frag::Whole => buf.remaining(),
            Frag::Random => this.rng.usize(1..=buf.remaining().clamp(1, 9000)),
            Frag::Bytewise => 1,
        };
        let mut small = vec![0u8; max.min(buf.remaining())];
        let mut rb = ReadBuf::new(&mut small);
        let r = Pin::new(&mut this.io).poll_read(cx, &mut rb);
        if let Poll::Ready(Ok(())) = r {
            buf.put_slice(rb.filled());
        }
        r
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, b)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// mailgate's server TLS for `localhost` (a fresh self-signed ECDSA certificate), and a
/// client trusting it.
pub(super) struct Setup {
    pub server: Arc<rustls::ServerConfig>,
    roots: RootCertStore,
    _files: crate::tls::tests::Server,
}

impl Setup {
    pub fn new() -> Setup {
        let files = crate::tls::tests::server();
        Setup {
            server: files.config.imap.clone(),
            roots: files.roots.clone(),
            _files: files,
        }
    }

    /// A client config offering only `suite` (and its version).
    pub fn client(&self, suite: SupportedCipherSuite) -> Arc<ClientConfig> {
        let provider = CryptoProvider {
            cipher_suites: vec![suite],
            ..(*crate::tls::provider()).clone()
        };
        let version = match suite {
            SupportedCipherSuite::Tls13(_) => &rustls::version::TLS13,
            SupportedCipherSuite::Tls12(_) => &rustls::version::TLS12,
        };
        let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"imap".to_vec()];
        cfg.resumption = Resumption::in_memory_sessions(8);
        Arc::new(cfg)
    }
}

pub(super) const SUITES: [SupportedCipherSuite; 6] = [
    cs::TLS13_AES_128_GCM_SHA256,
    cs::TLS13_AES_256_GCM_SHA384,
    cs::TLS13_CHACHA20_POLY1305_SHA256,
    cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// A rustls client driven by hand over the duplex: what it sends can be cut up or altered.
pub(super) struct Client {
    pub tls: ClientConnection,
    pub io: DuplexStream,
    rng: fastrand::Rng,
    pub frag: Frag,
    /// Received bytes rustls has not taken yet.
    raw: Vec<u8>,
}

impl Client {
    /// Send everything rustls has to send (cut into random pieces when fragmenting).
    pub async fn send_tls(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        while self.tls.wants_write() {
            self.tls.write_tls(&mut out)?;
        }
        self.send_raw(&out).await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = match self.frag {
                Frag::Whole => rest.len(),
                _ => self.rng.usize(1..=rest.len().min(5000)),
            };
            self.io.write_all(&rest[..n]).await?;
            self.io.flush().await?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Feed rustls what it takes of the bytes received (reading once from the server if
    /// none is left): `Ok(false)` at EOF.
    pub async fn recv(&mut self) -> Result<bool, rustls::Error> {
        if self.raw.is_empty() {
            let want = self.rng.usize(1..=20_000);
            let mut buf = vec![0u8; want];
            let n = self
                .io
                .read(&mut buf)
                .await
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            if n == 0 {
                return Ok(false);
            }
            self.raw.extend_from_slice(&buf[..n]);
        }
        let mut rd = &self.raw[..];
        let took = self
            .tls
            .read_tls(&mut rd)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        self.raw.drain(..took);
        self.tls.process_new_packets()?;
        Ok(true)
    }

    /// The handshake up to the client's last flight, which stays unsent (so that data
    /// written next leaves with it).
    pub async fn handshake_unsent(&mut self) {
        while self.tls.is_handshaking() {
            self.send_tls().await.expect("send");
            if self.tls.is_handshaking() {
                assert!(self.recv().await.expect("handshake"), "EOF in handshake");
            }
        }
    }

    pub async fn send_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.tls.writer().write_all(data)?;
        self.send_tls().await
    }

    pub async fn write(&mut self, data: &[u8]) {
        self.tls.writer().write_all(data).expect("buffered");
        self.send_tls().await.expect("send");
    }

    /// Plaintext until `n` bytes (or EOF, or an error).
    pub async fn read_plain(&mut self, n: usize) -> Result<Vec<u8>, rustls::Error> {
        let mut got = Vec::new();
        loop {
            let mut chunk = vec![0u8; 65536];
            match self.tls.reader().read(&mut chunk) {
                Ok(0) => return Ok(got),
                Ok(k) => {
                    got.extend_from_slice(&chunk[..k]);
                    if got.len() >= n {
                        return Ok(got);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(rustls::Error::General(e.to_string())),
            }
            if !self.recv().await? {
                return Ok(got);
            }
        }
    }
}

/// A connected pair: the client (its handshake not started) and the server's accept task.
pub(super) fn connect(
    setup: &Setup,
    client: Arc<ClientConfig>,
    frag: Frag,
    seed: u64,
) -> (
    Client,
    tokio::task::JoinHandle<io::Result<FrontTls<Trickle>>>,
) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = ClientConnection::new(client, name).expect("client");
    tls.set_buffer_limit(None);
    let server = Trickle {
        io: b,
        frag,
        rng: fastrand::Rng::with_seed(seed),
    };
    let task = tokio::spawn(accept(server, setup.server.clone()));
    let c = Client {
        tls,
        io: a,
        rng: fastrand::Rng::with_seed(seed ^ 0x5eed),
        frag,
        raw: Vec::new(),
    };
    (c, task)
}

/// The server side of the echo tests: everything read is written back, until EOF.
async fn echo(mut s: FrontTls<Trickle>) -> io::Result<(u64, (u32, u32))> {
    let mut buf = vec![0u8; 7000];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            s.shutdown().await?;
            return Ok((total, s.key_updates()));
        }
        total += n as u64;
        s.write_all(&buf[..n]).await?;
        s.flush().await?;
    }
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// Send `len` bytes through the echo (data leaving with the client's Finished), with
/// `key_updates` client KeyUpdates (update_requested) along the way; check what comes back,
/// then close_notify both ways.
async fn echo_case(suite: SupportedCipherSuite, frag: Frag, len: usize, key_updates: usize) {
    let setup = Setup::new();
    let (mut c, task) = connect(&setup, setup.client(suite), frag, len as u64);
    c.handshake_unsent().await;
    let data = pattern(len, 7);
    let first = data.len().min(1000);
    c.write(&data[..first]).await;
    let server = task.await.expect("join").expect("handshake");
    let want_version = match suite {
        SupportedCipherSuite::Tls13(_) => ProtocolVersion::TLSv1_3,
        SupportedCipherSuite::Tls12(_) => ProtocolVersion::TLSv1_2,
    };
    assert_eq!(server.protocol_version(), want_version);
    let echo = tokio::spawn(echo(server));
    let mut back = c.read_plain(first).await.expect("first echo");
    let chunk = 64 * 1024;
    let mut sent = first;
    let update_every = if key_updates > 0 {
        (len / (key_updates + 1)).max(1)
    } else {
        usize::MAX
    };
    let mut updates = 0u32;
    let mut next_update = update_every;
    while sent < data.len() {
        if sent >= next_update && matches!(suite, SupportedCipherSuite::Tls13(_)) {
            c.tls.refresh_traffic_keys().expect("key update");
            updates += 1;
            next_update += update_every;
        }
        let end = (sent + chunk).min(data.len());
        if let Err(e) = c.send_data(&data[sent..end]).await {
            let server = tokio::time::timeout(std::time::Duration::from_secs(2), echo).await;
            panic!("{suite:?} {frag:?}: send at {sent}: {e}; server {server:?}");
        }
        sent = end;
        // Keep at most 256 KiB in flight.
        if sent - back.len() > 256 * 1024 {
            let more = c
                .read_plain(sent - 128 * 1024 - back.len())
                .await
                .expect("echo");
            back.extend_from_slice(&more);
        }
    }
    let rest = c
        .read_plain(data.len() - back.len())
        .await
        .expect("echo rest");
    back.extend_from_slice(&rest);
    if back != data {
        let at = back.iter().zip(&data).position(|(a, b)| a != b);
        let server = tokio::time::timeout(std::time::Duration::from_secs(2), echo).await;
        panic!(
            "{suite:?} {frag:?}: echo differs: {} of {} bytes, first difference at {at:?}; server {server:?}",
            back.len(),
            data.len()
        );
    }
    c.tls.send_close_notify();
    c.send_tls().await.expect("close");
    // The server saw EOF and answered with its own close_notify: a clean EOF here.
    let tail = c.read_plain(1).await.expect("clean close");
    assert!(tail.is_empty());
    // Each of the client's KeyUpdates (update_requested) was answered with ours.
    let (total, (theirs, ours)) = echo.await.expect("join").expect("echo");
    assert_eq!(total, len as u64);
    assert_eq!((theirs, ours), (updates, updates), "{suite:?}");
    assert!(key_updates == 0 || updates > 0);
}

#[tokio::test]
async fn every_suite_echoes_megabytes_fragmented() {
    for suite in SUITES {
        echo_case(suite, Frag::Random, 3 * 1024 * 1024 + 17, 0).await;
    }
}

#[tokio::test]
async fn every_suite_echoes_bytewise() {
    for suite in SUITES {
        echo_case(suite, Frag::Bytewise, 40_000, 0).await;
    }
}

#[tokio::test]
async fn client_key_updates_with_update_requested() {
    for suite in &SUITES[..3] {
        echo_case(*suite, Frag::Whole, 300_000, 3).await;
        echo_case(*suite, Frag::Random, 2 * 1024 * 1024, 6).await;
    }
}

#[tokio::test]
async fn data_sent_with_the_clients_finished_arrives() {
    let setup = Setup::new();
    for suite in SUITES {
        let (mut c, task) = connect(&setup, setup.client(suite), Frag::Whole, 1);
        c.handshake_unsent().await;
        // Finished and the command in one write: the server reads both at once.
        c.tls
            .writer()
            .write_all(b"a1 CAPABILITY\r\n")
            .expect("buffered");
        c.send_tls().await.expect("send");
        let mut s = task.await.expect("join").expect("handshake");
        let mut got = [0u8; 15];
        s.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"a1 CAPABILITY\r\n", "{suite:?}");
    }
}

/// A connected pair after the handshake and one byte each way (the reply also carries the
/// TLS 1.3 tickets ahead of it, so they are out of the way).
pub(super) async fn established_with(
    setup: &Setup,
    cfg: Arc<ClientConfig>,
    seed: u64,
) -> (Client, FrontTls<Trickle>) {
    let (mut c, task) = connect(setup, cfg, Frag::Whole, seed);
    c.handshake_unsent().await;
    c.write(b"x").await;
    let mut s = task.await.expect("join").expect("handshake");
    let mut one = [0u8; 1];
    s.read_exact(&mut one).await.expect("read");
    s.write_all(b"y").await.expect("write");
    s.flush().await.expect("flush");
    assert_eq!(c.read_plain(1).await.expect("reply"), b"y");
    (c, s)
}

#[tokio::test]
async fn resumption_works_for_both_versions() {
    let setup = Setup::new();
    for suite in [SUITES[0], SUITES[3]] {
        let cfg = setup.client(suite);
        for round in 0..2 {
            let (c, _s) = established_with(&setup, cfg.clone(), round).await;
            let kind = c.tls.handshake_kind();
            let want = if round == 0 {
                HandshakeKind::Full
            } else {
                HandshakeKind::Resumed
            };
            assert_eq!(kind, Some(want), "{suite:?} round {round}");
        }
    }
}

/// Idle, a stream holds no buffer; with a 32-byte key (AES-256-GCM, ChaCha20) not its AEAD
/// contexts either, which come back on the next record. AES-128-GCM keeps them.
#[tokio::test]
async fn idle_stream_holds_no_buffer() {
    let setup = Setup::new();
    for (suite, rebuildable) in [(SUITES[0], false), (SUITES[1], true), (SUITES[5], true)] {
        let (mut c, task) = connect(&setup, setup.client(suite), Frag::Whole, 3);
        c.handshake_unsent().await;
        c.write(b"hello").await;
        let mut s = task.await.expect("join").expect("handshake");
        let mut got = [0u8; 5];
        s.read_exact(&mut got).await.expect("read");
        s.write_all(b"world").await.expect("write");
        s.flush().await.expect("flush");
        assert_eq!(c.read_plain(5).await.expect("reply"), b"world");
        let mut buf = [0u8; 5];
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(20), s.read(&mut buf)).await;
        assert!(pending.is_err(), "nothing to read");
        assert!(s.holds_nothing(), "{s:?}");
        let live = s.layer_mut().contexts_live();
        assert_eq!(live, (!rebuildable, !rebuildable), "{suite:?}");
        // A partial record is held, then let go once it completes and is read.
        c.tls.writer().write_all(b"later").expect("buffered");
        let mut rec = Vec::new();
        c.tls.write_tls(&mut rec).expect("tls");
        c.io.write_all(&rec[..3]).await.expect("write");
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(20), s.read(&mut buf)).await;
        assert!(pending.is_err(), "a partial record is no data");
        assert!(!s.holds_nothing());
        c.io.write_all(&rec[3..]).await.expect("write");
        s.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"later");
        assert!(s.holds_nothing(), "{s:?}");
        // And back the other way under a rebuilt sealing context.
        s.write_all(b"again").await.expect("write");
        s.flush().await.expect("flush");
        assert_eq!(c.read_plain(5).await.expect("again"), b"again");
        assert!(!format!("{s:?}").contains("later"));
    }
}
