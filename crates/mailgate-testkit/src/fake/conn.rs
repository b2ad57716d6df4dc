//! The per-connection plumbing shared by the IMAP and POP3 fakes: implicit TLS and the
//! STARTTLS upgrade, line reading with a small buffer, delayed writes, stalling, resetting
//! and the login-time faults.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::tls::Stream;
use super::{FaultMode, Shared, TempCode, TlsMode};

/// Longest command line a fake reads; longer lines end the connection.
const MAX_LINE: u64 = 16 * 1024;
/// Read buffer per connection: small, because idle benchmark sessions hold it.
const READ_BUF: usize = 512;

/// Sets up one accepted connection in the given mode (implicit TLS included); `None` when
/// the connection ends before a protocol is spoken (TLS stall or a failed handshake).
pub(super) async fn accept(
    stream: TcpStream,
    shared: Arc<Shared>,
    mode: FaultMode,
) -> Option<Conn> {
    let delay = match mode {
        FaultMode::SlowResponses(d) => Some(d),
        _ => None,
    };
    let stream = match (&shared.tls, shared.tls_mode) {
        (Some(config), TlsMode::Implicit) => {
            if mode == FaultMode::TlsStall {
                // Hold the connection and never answer the ClientHello.
                let _ = tokio::io::copy(&mut { stream }, &mut tokio::io::sink()).await;
                return None;
            }
            match TlsAcceptor::from(Arc::clone(config)).accept(stream).await {
                Ok(tls) => {
                    shared.record_tls_handshake();
                    Stream::Tls(Box::new(tls))
                }
                Err(_) => return None,
            }
        }
        _ => Stream::Plain(stream),
    };
    Some(Conn {
        rd: BufReader::with_capacity(READ_BUF, stream),
        delay,
        mode,
        shared,
    })
}

/// Resets a connection: SO_LINGER 0 then close sends an RST.
pub(super) fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// What a session handler does once a login command arrived.
pub(super) enum LoginFate {
    /// Answer it.
    Proceed,
    /// The connection was reset or stalled until the peer left: stop serving.
    Sabotaged,
}

/// A login answer the mode puts in place of the real verdict.
pub(super) enum FakedVerdict {
    /// A temporary refusal with this code.
    Temp(TempCode),
    /// Something that is not a verdict at all.
    Garbage,
}

/// What a session handler does once STARTTLS/STLS was answered.
pub(super) enum Upgrade {
    /// TLS is up: go on reading commands inside it.
    Done,
    /// The handshake never happened ([`FaultMode::TlsStall`]) and the peer left: stop.
    Stalled,
}

/// One connection of a fake.
pub(super) struct Conn {
    rd: BufReader<Stream>,
    delay: Option<Duration>,
    pub(super) mode: FaultMode,
    pub(super) shared: Arc<Shared>,
}

impl Conn {
    /// Writes one response (after the configured delay, if any).
    pub(super) async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.send_parts(&[bytes]).await
    }

    /// Writes one response made of several parts, delayed once.
    pub(super) async fn send_parts(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let w = self.rd.get_mut();
        for p in parts {
            w.write_all(p).await?;
        }
        w.flush().await
    }

    /// Reads one line without its CRLF; `None` at end of stream.
    pub(super) async fn read_line(&mut self) -> io::Result<Option<String>> {
        let mut buf = Vec::new();
        let n = (&mut self.rd)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        if !buf.ends_with(b"\n") {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }

    /// Reads exactly `n` bytes (an IMAP literal).
    pub(super) async fn read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.rd.read_exact(&mut buf).await?;
        Ok(buf)
    }

    /// Never answers again: discards input until the peer closes.
    pub(super) async fn stall(&mut self) -> io::Result<()> {
        tokio::io::copy(&mut self.rd, &mut tokio::io::sink()).await?;
        Ok(())
    }

    /// Ends the connection in order: TLS close_notify (if in TLS), then FIN.
    pub(super) async fn finish(&mut self) -> io::Result<()> {
        self.rd.get_mut().shutdown().await
    }

    /// Whether TLS is up on this connection.
    pub(super) fn tls_active(&self) -> bool {
        self.rd.get_ref().is_tls()
    }

    /// Whether STARTTLS / STLS is offered now (advertised and answered).
    pub(super) fn offers_starttls(&self) -> bool {
        !self.tls_active()
            && (self.shared.tls_mode == TlsMode::Starttls
                || (self.mode == FaultMode::TlsStall && self.shared.tls_mode != TlsMode::Implicit))
    }

    /// Answers STARTTLS / STLS with `ok` and upgrades: bytes that arrived behind the
    /// command are discarded (never executed inside TLS). In [`FaultMode::TlsStall`] the
    /// handshake never happens.
    pub(super) async fn start_tls(&mut self, ok: &[u8]) -> io::Result<Upgrade> {
        self.send(ok).await?;
        if self.mode == FaultMode::TlsStall {
            self.stall().await?;
            return Ok(Upgrade::Stalled);
        }
        let Some(config) = self.shared.tls.clone() else {
            return Err(io::Error::other("STARTTLS without a certificate"));
        };
        let old = std::mem::replace(
            &mut self.rd,
            BufReader::with_capacity(READ_BUF, Stream::Upgrading),
        );
        // `into_inner` drops whatever was buffered after the command.
        let Stream::Plain(tcp) = old.into_inner() else {
            return Err(io::Error::other("STARTTLS inside TLS"));
        };
        let tls = TlsAcceptor::from(config).accept(tcp).await?;
        self.shared.record_tls_handshake();
        self.rd = BufReader::with_capacity(READ_BUF, Stream::Tls(Box::new(tls)));
        Ok(Upgrade::Done)
    }

    /// Applies the login-time faults that act before the credentials are read: reset, or
    /// hang forever.
    pub(super) async fn on_login(&mut self) -> io::Result<LoginFate> {
        match self.mode {
            FaultMode::ResetDuringLogin => {
                self.shared.record_sabotage();
                // Closing after SO_LINGER 0 sends an RST; the caller drops the stream.
                if let Some(tcp) = self.rd.get_ref().tcp() {
                    let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
                }
                Ok(LoginFate::Sabotaged)
            }
            FaultMode::LoginHangs => {
                self.shared.record_sabotage();
                self.stall().await?;
                Ok(LoginFate::Sabotaged)
            }
            _ => Ok(LoginFate::Proceed),
        }
    }

    /// The answer the mode gives instead of a verdict, once the credentials are in.
    pub(super) fn faked_verdict(&self) -> Option<FakedVerdict> {
        let v = match self.mode {
            FaultMode::LoginTempFail(code) => FakedVerdict::Temp(code),
            FaultMode::GarbageVerdict => FakedVerdict::Garbage,
            _ => return None,
        };
        self.shared.record_sabotage();
        Some(v)
    }

    /// Whether the mode closes the connection right after an accepted login.
    pub(super) fn closes_after_login(&self) -> bool {
        self.mode == FaultMode::CloseAfterLoginOk
    }

    /// Whether the mode breaks off a message body half way.
    pub(super) fn breaks_fetch(&self) -> bool {
        matches!(
            self.mode,
            FaultMode::CloseMidFetch | FaultMode::StallMidSplice
        )
    }

    /// Sends `head` and the first half of `body`, then closes (FIN; inside TLS without a
    /// close_notify, like a crashed process) or stalls, per the mode. The caller stops
    /// serving afterwards.
    pub(super) async fn broken_body(&mut self, head: &[u8], body: &[u8]) -> io::Result<()> {
        self.send_parts(&[head, &body[..body.len() / 2]]).await?;
        if self.mode == FaultMode::StallMidSplice {
            return self.stall().await;
        }
        if let Some(tcp) = self.rd.get_ref().tcp() {
            let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write);
        }
        Ok(())
    }
}

/// Decodes a SASL PLAIN response (`authzid NUL authcid NUL passwd`, base64) into
/// (user, password); the user is the authorization identity when one is given.
pub(super) fn decode_plain(b64: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let mut parts = raw.split(|b| *b == 0);
    let (authz, authc, pass) = (parts.next()?, parts.next()?, parts.next()?);
    let user = if authz.is_empty() { authc } else { authz };
    Some((
        String::from_utf8_lossy(user).into_owned(),
        String::from_utf8_lossy(pass).into_owned(),
    ))
}

/// Decodes a base64 SASL LOGIN step.
pub(super) fn decode_b64(b64: &str) -> Option<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    Some(String::from_utf8_lossy(&raw).into_owned())
}
