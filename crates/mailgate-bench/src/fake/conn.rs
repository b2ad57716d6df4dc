//! The per-connection plumbing shared by the IMAP and POP3 fakes: line reading with a
//! small buffer, delayed writes, stalling and resetting.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{FaultMode, Protocol, Shared};

/// Longest command line a fake reads; longer lines end the connection.
const MAX_LINE: u64 = 16 * 1024;
/// Read buffer per connection: small, because idle benchmark sessions hold it.
const READ_BUF: usize = 512;

/// Serves one accepted connection in the given mode until either side closes.
pub(super) async fn serve(stream: TcpStream, shared: Arc<Shared>, mode: FaultMode) {
    let delay = match mode {
        FaultMode::SlowResponses(d) => Some(d),
        _ => None,
    };
    let mut conn = Conn {
        rd: BufReader::with_capacity(READ_BUF, stream),
        delay,
        mode,
        shared,
    };
    let _ = match conn.shared.protocol {
        Protocol::Imap => super::imap::run(&mut conn).await,
        Protocol::Pop3 => super::pop3::run(&mut conn).await,
    };
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

/// One connection of a fake.
pub(super) struct Conn {
    rd: BufReader<TcpStream>,
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
        Ok(())
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

    /// Applies the login-time faults: reset, or hang forever.
    pub(super) async fn on_login(&mut self) -> io::Result<LoginFate> {
        match self.mode {
            FaultMode::ResetDuringLogin => {
                self.shared.record_sabotage();
                // Closing after SO_LINGER 0 sends an RST; the caller drops the stream.
                let _ = socket2::SockRef::from(self.rd.get_ref()).set_linger(Some(Duration::ZERO));
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
