//! The server handshake, driven through rustls' unbuffered API over the TCP socket, then
//! handed to the record layer: rustls' `dangerous_into_kernel_connection` gives the
//! traffic secrets and the key schedule; nothing of rustls' buffers stays behind.
//!
//! Application data rustls decrypted before the handshake ended (a client that sends its
//! first command with its Finished) and the bytes after it carry over into the stream.

use std::io;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::record::RecordLayer;
use super::stream::{FrontTls, to_io};

/// Handshake input buffer to start with (a ClientHello is rarely over 2 KiB; the buffer
/// doubles when a record needs more), and the most it may grow to (a ClientHello may reach
/// 64 KiB). Small, because what a handshake leaves freed behind stays in the heap.
const INITIAL_INCOMING: usize = 4096;
const MAX_INCOMING: usize = 80 * 1024;

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// What the loop does once rustls' state (which borrows the buffers) is gone.
enum Step {
    Fail(rustls::Error),
    Read,
    Write,
    Done,
    Again,
}

/// Accept a TLS client on `tcp`. Errors are rustls' (inside `InvalidData`) or the
/// socket's; rustls' alert for a failed handshake is sent before the error returns. The
/// caller bounds the whole by the handshake deadline.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    mut tcp: S,
    config: Arc<ServerConfig>,
) -> io::Result<FrontTls<S>> {
    let mut conn = UnbufferedServerConnection::new(config).map_err(tls_err)?;
    let mut incoming = vec![0u8; INITIAL_INCOMING];
    let mut filled = 0usize;
    let mut outgoing: Vec<u8> = Vec::new();
    let mut plain: Vec<u8> = Vec::new();
    let mut peer_closed = false;
    loop {
        let UnbufferedStatus { mut discard, state } =
            conn.process_tls_records(&mut incoming[..filled]);
        let step = match state {
            Err(e) => Step::Fail(e),
            Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                encode(&mut enc, &mut outgoing)?;
                Step::Again
            }
            Ok(ConnectionState::TransmitTlsData(tx)) => {
                tx.done();
                Step::Write
            }
            Ok(ConnectionState::BlockedHandshake) => Step::Read,
            Ok(ConnectionState::ReadTraffic(mut rt)) => {
                while let Some(rec) = rt.next_record() {
                    let rec = rec.map_err(tls_err)?;
                    discard += rec.discard;
                    plain.extend_from_slice(rec.payload);
                }
                Step::Again
            }
            Ok(ConnectionState::PeerClosed) => {
                peer_closed = true;
                Step::Again
            }
            Ok(ConnectionState::WriteTraffic(_)) | Ok(ConnectionState::Closed) => Step::Done,
            Ok(_) => {
                return Err(tls_err(rustls::Error::General(
                    "unexpected handshake state".into(),
                )));
            }
        };
        if discard > 0 {
            incoming.copy_within(discard..filled, 0);
            filled -= discard;
        }
        match step {
            Step::Fail(e) => {
                // rustls keeps its place in the buffer: it must see the same bytes again.
                drop(send_alert(&mut conn, &mut incoming[..filled], &mut tcp).await);
                return Err(tls_err(e));
            }
            Step::Again => {}
            Step::Write => {
                tcp.write_all(&outgoing).await?;
                outgoing = Vec::new();
            }
            Step::Read => {
                if filled == incoming.len() {
                    if incoming.len() >= MAX_INCOMING {
                        return Err(tls_err(rustls::Error::InvalidMessage(
                            rustls::InvalidMessage::MessageTooLarge,
                        )));
                    }
                    incoming.resize((incoming.len() * 2).min(MAX_INCOMING), 0);
                }
                let n = tcp.read(&mut incoming[filled..]).await?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "tls handshake eof",
                    ));
                }
                filled += n;
            }
            Step::Done => break,
        }
    }
    if !outgoing.is_empty() {
        tcp.write_all(&outgoing).await?;
    }
    let (secrets, kernel) = conn.dangerous_into_kernel_connection().map_err(tls_err)?;
    let layer = RecordLayer::new(secrets, kernel).map_err(to_io)?;
    Ok(FrontTls::new(
        tcp,
        layer,
        &plain,
        &incoming[..filled],
        peer_closed,
    ))
}

/// Append rustls' next record to `out`.
fn encode(
    enc: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::server::ServerConnectionData>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let at = out.len();
    out.resize(at + 4096, 0);
    let n = match enc.encode(&mut out[at..]) {
        Err(EncodeError::InsufficientSize(s)) => {
            out.resize(at + s.required_size, 0);
            enc.encode(&mut out[at..])
        }
        r => r,
    };
    match n {
        Ok(n) => {
            out.truncate(at + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(at);
            Err(tls_err(rustls::Error::General(e.to_string())))
        }
    }
}

/// After a failed handshake: what rustls still has queued (its alert, and any flight it
/// had begun, e.g. a ServerHello before an ALPN refusal) to the client.
async fn send_alert<S: AsyncWrite + Unpin>(
    conn: &mut UnbufferedServerConnection,
    incoming: &mut [u8],
    tcp: &mut S,
) -> io::Result<()> {
    let mut out = Vec::new();
    // Only while rustls has records queued: it hands those out before it looks at the
    // input again (which would meet the bad record a second time). Bounded in any case.
    for _ in 0..8 {
        if !conn.wants_write() {
            break;
        }
        match conn.process_tls_records(incoming).state {
            Ok(ConnectionState::EncodeTlsData(mut enc)) => encode(&mut enc, &mut out)?,
            _ => break,
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    tcp.write_all(&out).await
}
