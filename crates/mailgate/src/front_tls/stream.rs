//! The client-facing TLS stream after the handshake: the [`RecordLayer`] over the TCP
//! socket, as `AsyncRead` / `AsyncWrite`.
//!
//! Idle, it holds no buffer: received bytes live in a buffer borrowed from
//! [`crate::bufpool`] only while a partial record or undelivered plaintext exists, and
//! sealed records only until the socket took them.

use std::io::{self, IoSlice};
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustls::ProtocolVersion;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::record::{MAX_PLAINTEXT, MAX_RECORD, Outbox, Record, RecordError, RecordLayer};
use crate::bufpool;

/// Plaintext taken per `poll_write` (four records).
const WRITE_CHUNK: usize = 4 * MAX_PLAINTEXT;
/// Sealed bytes held before `poll_write` waits for the socket.
const TX_HIGH: usize = 64 * 1024;
/// Records handed to one vectored write.
const IOV_MAX: usize = 16;

/// A client's TLS connection after the handshake. `Debug` shows the record layer's
/// counters and what is buffered, never bytes.
pub struct FrontTls<S = TcpStream> {
    tcp: S,
    layer: RecordLayer,
    /// Received bytes: `plain` (decrypted, undelivered), then ciphertext `start..end`.
    rx: Option<Vec<u8>>,
    plain: Range<usize>,
    start: usize,
    end: usize,
    /// Sealed records not yet written; `tx_pos` into the first.
    tx: Outbox,
    tx_pos: usize,
    tx_bytes: usize,
    /// The client's close_notify arrived: EOF once `plain` is delivered.
    peer_closed: bool,
    /// A read failed: later reads fail too.
    read_failed: bool,
}

impl<S> std::fmt::Debug for FrontTls<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontTls")
            .field("layer", &self.layer)
            .field("plain", &self.plain.len())
            .field("ciphertext", &(self.end - self.start))
            .field("unsent", &self.tx_bytes)
            .field("peer_closed", &self.peer_closed)
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrontTls<S> {
    /// The stream after a handshake: `plain` is application data rustls already decrypted,
    /// `ciphertext` bytes that followed it (a partial record).
    pub fn new(
        tcp: S,
        layer: RecordLayer,
        plain: &[u8],
        ciphertext: &[u8],
        peer_closed: bool,
    ) -> Self {
        let mut s = FrontTls {
            tcp,
            layer,
            rx: None,
            plain: 0..0,
            start: 0,
            end: 0,
            tx: Outbox::new(),
            tx_pos: 0,
            tx_bytes: 0,
            peer_closed,
            read_failed: false,
        };
        let held = plain.len() + ciphertext.len();
        if held > 0 {
            let mut buf = if held + MAX_RECORD <= bufpool::BUF_SIZE {
                bufpool::take()
            } else {
                vec![0; held + MAX_RECORD]
            };
            buf[..plain.len()].copy_from_slice(plain);
            buf[plain.len()..held].copy_from_slice(ciphertext);
            s.plain = 0..plain.len();
            s.start = plain.len();
            s.end = held;
            s.rx = Some(buf);
        }
        s
    }

    /// The negotiated TLS version.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.layer.version()
    }

    /// Key updates so far: (the client's, ours).
    pub fn key_updates(&self) -> (u32, u32) {
        self.layer.key_updates()
    }

    #[cfg(test)]
    pub(crate) fn layer_mut(&mut self) -> &mut RecordLayer {
        &mut self.layer
    }

    /// True when no buffer is held (nothing received but undelivered, nothing unsent).
    pub fn holds_nothing(&self) -> bool {
        self.rx.is_none() && self.tx.is_empty() && self.tx.capacity() == 0
    }

    /// True when a read would return without waiting for the socket: plaintext held, a
    /// complete record buffered, or the end known.
    fn readable_now(&self) -> bool {
        if !self.plain.is_empty() || self.peer_closed || self.read_failed {
            return true;
        }
        self.rx.as_ref().is_some_and(|b| {
            RecordLayer::record_len(&b[self.start..self.end])
                .is_some_and(|n| n <= self.end - self.start)
        })
    }

    fn release_rx_if_empty(&mut self) {
        if self.plain.is_empty()
            && self.start == self.end
            && let Some(buf) = self.rx.take()
        {
            bufpool::give(buf);
            self.plain = 0..0;
            self.start = 0;
            self.end = 0;
        }
    }

    /// Write sealed records until none is left (`Ready(Ok)`) or the socket is full.
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.tx.is_empty() {
            let mut iov = [IoSlice::new(&[]); IOV_MAX];
            let mut n_iov = 0;
            for (i, rec) in self.tx.iter().take(IOV_MAX).enumerate() {
                let from = if i == 0 { self.tx_pos } else { 0 };
                iov[i] = IoSlice::new(&rec[from..]);
                n_iov += 1;
            }
            let mut n = ready!(Pin::new(&mut self.tcp).poll_write_vectored(cx, &iov[..n_iov]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.tx_bytes -= n;
            while n > 0 {
                let Some(front) = self.tx.front() else { break };
                let left = front.len() - self.tx_pos;
                if n >= left {
                    n -= left;
                    self.tx.pop_front();
                    self.tx_pos = 0;
                } else {
                    self.tx_pos += n;
                    n = 0;
                }
            }
        }
        // Keep no queue's capacity while idle.
        self.tx = Outbox::new();
        Poll::Ready(Ok(()))
    }

    fn queued(&mut self) {
        self.tx_bytes = self.tx.iter().map(Vec::len).sum::<usize>() - self.tx_pos;
    }

    /// A read's error: the alert it queued goes out if the socket takes it now.
    fn read_error(&mut self, cx: &mut Context<'_>, e: RecordError) -> io::Error {
        self.read_failed = true;
        self.queued();
        let _ = self.poll_push(cx);
        if let Some(buf) = self.rx.take() {
            bufpool::give(buf);
        }
        (self.plain, self.start, self.end) = (0..0, 0, 0);
        to_io(e)
    }
}

impl FrontTls<TcpStream> {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Readiness for reading: at once when a read would not wait for the socket, else the
    /// socket's. Records queued by reads (a key update's answer) are pushed out meanwhile.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.readable_now() {
            return Poll::Ready(Ok(()));
        }
        if let Poll::Ready(Err(e)) = self.poll_push(cx) {
            return Poll::Ready(Err(e));
        }
        self.tcp.poll_read_ready(cx)
    }
}

/// rustls' errors travel inside an `InvalidData` I/O error, as with tokio-rustls (the
/// session's failure classification looks for them there).
pub fn to_io(e: RecordError) -> io::Error {
    match e {
        RecordError::Peer(e) | RecordError::Alert(e) | RecordError::Keys(e) => {
            io::Error::new(io::ErrorKind::InvalidData, e)
        }
        RecordError::Closed => io::ErrorKind::BrokenPipe.into(),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for FrontTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut delivered = false;
        // A key update's answer or a warning queued by an earlier read.
        if !this.tx.is_empty()
            && let Poll::Ready(Err(e)) = this.poll_push(cx)
        {
            return Poll::Ready(Err(e));
        }
        loop {
            if out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if !this.plain.is_empty() {
                if let Some(buf) = &this.rx {
                    let n = this.plain.len().min(out.remaining());
                    out.put_slice(&buf[this.plain.start..this.plain.start + n]);
                    this.plain.start += n;
                    delivered = true;
                }
                this.release_rx_if_empty();
                continue;
            }
            if this.read_failed {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            if let Some(buf) = this.rx.as_mut() {
                let before = this.tx.len();
                let got = this
                    .layer
                    .read(&mut buf[this.start..this.end], &mut this.tx);
                if this.tx.len() != before {
                    this.queued();
                }
                match got {
                    Ok(Record::Data { used, plain }) => {
                        this.plain = this.start + plain.start..this.start + plain.end;
                        this.start += used;
                        this.release_rx_if_empty();
                        continue;
                    }
                    Ok(Record::Control { used }) => {
                        this.start += used;
                        let _ = this.poll_push(cx);
                        this.release_rx_if_empty();
                        continue;
                    }
                    Ok(Record::Closed { used }) => {
                        this.start += used;
                        this.peer_closed = true;
                        this.release_rx_if_empty();
                        continue;
                    }
                    Ok(Record::NeedMore) => {}
                    Err(e) => return Poll::Ready(Err(this.read_error(cx, e))),
                }
            }
            if delivered {
                return Poll::Ready(Ok(()));
            }
            // Read more ciphertext behind what is there (moved to the front).
            let buf = this.rx.get_or_insert_with(bufpool::take);
            if this.start > 0 {
                buf.copy_within(this.start..this.end, 0);
                this.end -= this.start;
                this.start = 0;
                this.plain = 0..0;
            }
            let mut rb = ReadBuf::new(&mut buf[this.end..]);
            match Pin::new(&mut this.tcp).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    this.release_rx_if_empty();
                    if this.rx.is_none() {
                        this.layer.rest_rx();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    this.release_rx_if_empty();
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        // Closed without close_notify (rustls: UnexpectedEof, as before).
                        this.release_rx_if_empty();
                        this.read_failed = true;
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed connection without sending TLS close_notify",
                        )));
                    }
                    this.end += n;
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FrontTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.tx_bytes >= TX_HIGH {
            ready!(this.poll_push(cx))?;
        }
        let n = data.len().min(WRITE_CHUNK);
        let written = this.layer.write(&data[..n], &mut this.tx);
        this.queued();
        if let Err(e) = written {
            let _ = this.poll_push(cx);
            return Poll::Ready(Err(to_io(e)));
        }
        if let Poll::Ready(Err(e)) = this.poll_push(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_push(cx))?;
        this.layer.rest_tx();
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.layer.write_closed() {
            this.layer.close_notify(&mut this.tx);
            this.queued();
        }
        ready!(this.poll_push(cx))?;
        match ready!(Pin::new(&mut this.tcp).poll_shutdown(cx)) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}
