//! Copying bytes both ways between client and backend, unchanged, without holding a
//! buffer while a session is idle.
//!
//! `tokio::io::copy_bidirectional` keeps two 8 KiB buffers per session for its whole
//! life (about 1.6 GB for 100,000 idle IMAP IDLE sessions). [`Splice`] instead waits for
//! the socket to become readable, borrows a buffer from the per-thread pool
//! ([`crate::bufpool`]) only while data is moving, and gives it back as soon as the source
//! would block.
//!
//! Bytes are counted per direction in plain fields and handed to a [`ByteSink`] (the
//! `bytes_total` counters) in batches: once [`FLUSH_BYTES`] have moved, or at most
//! [`FLUSH_INTERVAL`] after the first unreported byte (the splice's timer wakes for it),
//! and the rest when the splice is dropped. No atomic operation per read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use mailgate_health::Activity;
use mailgate_proto::imap::ResponseBoundary;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::bufpool::{give as give_buf, take as take_buf};
use crate::conn::Conn;

/// Unreported bytes that make the splice report at once.
pub const FLUSH_BYTES: u64 = 1024 * 1024;
/// Longest a moved byte stays unreported while the session runs.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Where a running splice reports the bytes it moved (`mailgate_bytes_total`).
pub trait ByteSink: std::fmt::Debug + Send + Sync {
    /// Bytes moved client → backend (`up`) and backend → client (`down`) since the last call.
    fn add(&self, up: u64, down: u64);
}

/// How long the backend may go on answering after the client closed its side (an IMAP
/// client that half-closes after LOGOUT still gets the backend's BYE and OK), before the
/// session ends anyway: a half-open peer never holds a budget slot for long.
pub const HALF_CLOSE_LINGER: Duration = Duration::from_secs(10);

/// How a splice ended.
#[derive(Debug)]
pub enum SpliceEnd {
    /// The backend closed; what it sent was delivered and the client's side closed too.
    BackendClosed,
    /// The client closed; the end was passed on to the backend.
    ClientClosed,
    /// No bytes moved in either direction for the idle limit.
    Idle,
    /// A read or write failed (reset, broken pipe, TLS error).
    Error(io::Error),
    /// A write made no progress for the write-stall limit: the peer does not read.
    WriteStalled,
}

/// One direction of the splice. `Debug` shows counts, never the bytes in flight.
#[derive(Default)]
struct Half {
    buf: Option<Vec<u8>>,
    start: usize,
    end: usize,
    /// Try a read before waiting for readiness (TLS may hold decrypted bytes).
    read_first: bool,
    needs_flush: bool,
    eof: bool,
    done: bool,
    bytes: u64,
    /// Since when a write of buffered bytes has made no progress.
    stalled_since: Option<Instant>,
}

impl std::fmt::Debug for Half {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Half")
            .field("buffered", &self.end.saturating_sub(self.start))
            .field("holds_buffer", &self.buf.is_some())
            .field("read_first", &self.read_first)
            .field("needs_flush", &self.needs_flush)
            .field("eof", &self.eof)
            .field("done", &self.done)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Half {
    fn new(initial: Vec<u8>) -> Self {
        let end = initial.len();
        Half {
            buf: (!initial.is_empty()).then_some(initial),
            end,
            read_first: true,
            ..Half::default()
        }
    }

    /// Drive this direction. `Ready(Ok(()))` when the source ended and the end was
    /// passed on; `Pending` otherwise. Sets `*moved` when bytes moved.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut Conn,
        dst: &mut Conn,
        moved: &mut bool,
        mut boundary: Option<&mut ResponseBoundary>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if let Some(buf) = &self.buf {
                if self.start < self.end {
                    let n = match Pin::new(&mut *dst).poll_write(cx, &buf[self.start..self.end]) {
                        Poll::Ready(r) => r?,
                        Poll::Pending => {
                            self.stalled_since.get_or_insert_with(Instant::now);
                            return Poll::Pending;
                        }
                    };
                    self.stalled_since = None;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.start += n;
                    self.bytes += n as u64;
                    self.needs_flush = true;
                    *moved = true;
                    continue;
                }
                if let Some(buf) = self.buf.take() {
                    give_buf(buf);
                }
            }
            if self.needs_flush {
                ready!(Pin::new(&mut *dst).poll_flush(cx))?;
                self.needs_flush = false;
            }
            if self.eof {
                ready!(Pin::new(&mut *dst).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            if !self.read_first {
                ready!(src.poll_read_ready(cx))?;
            }
            self.read_first = false;
            let mut buf = take_buf();
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        give_buf(buf);
                        self.eof = true;
                    } else {
                        if let Some(b) = boundary.as_deref_mut() {
                            b.feed(&buf[..n]);
                        }
                        self.buf = Some(buf);
                        self.start = 0;
                        self.end = n;
                        *moved = true;
                    }
                }
                Poll::Ready(Err(e)) => {
                    give_buf(buf);
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    give_buf(buf);
                    return Poll::Pending;
                }
            }
        }
    }
}

/// A spliced session: a future that copies both ways until both sides closed, an error,
/// or the idle limit. Poll it by `&mut` inside `select!` to combine it with kicks and
/// shutdown; the byte counters stay readable afterwards.
#[derive(Debug)]
pub struct Splice {
    client: Conn,
    backend: Conn,
    up: Half,
    down: Half,
    idle: Duration,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
    activity: Option<Arc<Activity>>,
    /// IMAP: where the backend's output stands, so a BYE goes in only between responses.
    boundary: Option<ResponseBoundary>,
    /// When the client's side ended (the linger runs from here).
    client_done_at: Option<Instant>,
    /// Longest a write may make no progress.
    write_stall: Duration,
    /// Where moved bytes are reported, and what of them was reported already.
    sink: Option<Box<dyn ByteSink>>,
    reported: (u64, u64),
    /// When the oldest unreported byte must be reported.
    report_at: Option<Instant>,
}

impl Splice {
    /// Touch `activity` whenever bytes move (kicks wait for a quiet moment).
    pub fn with_activity(mut self, activity: Arc<Activity>) -> Self {
        self.activity = Some(activity);
        self
    }

    /// Start splicing. `to_backend` / `to_client` are bytes already read from one side
    /// that must be delivered to the other first (pipelined commands, early responses).
    pub fn new(
        client: Conn,
        backend: Conn,
        to_backend: Vec<u8>,
        to_client: Vec<u8>,
        idle: Duration,
    ) -> Self {
        let now = Instant::now();
        Splice {
            client,
            backend,
            up: Half::new(to_backend),
            down: Half::new(to_client),
            idle,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            activity: None,
            boundary: None,
            client_done_at: None,
            write_stall: Duration::MAX,
            sink: None,
            reported: (0, 0),
            report_at: None,
        }
    }

    /// Report moved bytes to `sink` while the session runs (batched; see the module docs).
    pub fn with_byte_sink(mut self, sink: impl ByteSink + 'static) -> Self {
        self.sink = Some(Box::new(sink));
        self
    }

    /// Report the bytes not yet reported if there are [`FLUSH_BYTES`] of them or they
    /// waited [`FLUSH_INTERVAL`] (`force`: in any case).
    fn report(&mut self, now: Instant, force: bool) {
        let Some(sink) = &self.sink else { return };
        let up = self.up.bytes - self.reported.0;
        let down = self.down.bytes - self.reported.1;
        if up == 0 && down == 0 {
            return;
        }
        let due = *self.report_at.get_or_insert(now + FLUSH_INTERVAL);
        if force || up + down >= FLUSH_BYTES || now >= due {
            sink.add(up, down);
            self.reported = (self.up.bytes, self.down.bytes);
            self.report_at = None;
        }
    }

    /// Close the session when a write makes no progress for `limit` (the peer does not
    /// read while the other side has data).
    pub fn with_write_stall(mut self, limit: Duration) -> Self {
        self.write_stall = limit;
        self
    }

    fn stall_deadline(&self) -> Option<Instant> {
        let since = match (self.up.stalled_since, self.down.stalled_since) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        since.checked_add(self.write_stall)
    }

    /// Track IMAP response boundaries in what the backend sends (for [`Splice::goodbye`]).
    pub fn with_imap_boundary(mut self) -> Self {
        self.boundary = Some(ResponseBoundary::new());
        self
    }

    /// End the session from mailgate's side: `bye` goes to the client first when nothing
    /// is buffered and the backend's output stands between two responses (never inside a
    /// response or a literal); then both sides are closed. Every write is bounded by
    /// `limit`, so a client that does not read cannot hold the session.
    pub async fn goodbye(&mut self, bye: Option<&[u8]>, limit: Duration) {
        use tokio::io::AsyncWriteExt;
        let at_boundary = self.boundary.as_ref().is_none_or(|b| b.at_boundary());
        if let Some(bye) = bye
            && self.is_quiet()
            && at_boundary
            && !self.down.done
        {
            let _ = tokio::time::timeout(limit, async {
                self.client.write_all(bye).await?;
                self.client.flush().await
            })
            .await;
        }
        let _ = tokio::time::timeout(limit, self.client.shutdown()).await;
        let _ = tokio::time::timeout(limit, self.backend.shutdown()).await;
    }

    /// Go on splicing until nothing has moved for `quiet` (a quiet moment to close at), at
    /// most for `max`. Returns the end if the session ended by itself meanwhile.
    pub async fn until_quiet(&mut self, quiet: Duration, max: Duration) -> Option<SpliceEnd> {
        let give_up = Instant::now() + max;
        loop {
            let quiet_at = self.last_activity + quiet;
            if Instant::now() >= quiet_at && self.is_quiet() {
                return None;
            }
            let wake = quiet_at
                .max(Instant::now() + Duration::from_millis(10))
                .min(give_up);
            tokio::select! {
                end = &mut *self => return Some(end),
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= give_up {
                        return None;
                    }
                }
            }
        }
    }

    /// Bytes copied client → backend so far.
    pub fn bytes_up(&self) -> u64 {
        self.up.bytes
    }

    /// Bytes copied backend → client so far.
    pub fn bytes_down(&self) -> u64 {
        self.down.bytes
    }

    /// When bytes last moved in either direction.
    pub fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// True when no bytes are buffered inside mailgate in either direction.
    pub fn is_quiet(&self) -> bool {
        self.up.buf.is_none() && self.down.buf.is_none()
    }
}

impl Future for Splice {
    type Output = SpliceEnd;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SpliceEnd> {
        let this = self.get_mut();
        let mut moved = false;
        let up = this
            .up
            .poll(cx, &mut this.client, &mut this.backend, &mut moved, None);
        let down = this.down.poll(
            cx,
            &mut this.backend,
            &mut this.client,
            &mut moved,
            this.boundary.as_mut(),
        );
        let now = Instant::now();
        if moved {
            this.last_activity = now;
            if let Some(a) = &this.activity {
                a.touch();
            }
            this.report(now, false);
        }
        match (up, down) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => {
                return Poll::Ready(SpliceEnd::Error(e));
            }
            // The backend ended the session: its last bytes and the end reached the client.
            (_, Poll::Ready(Ok(()))) => return Poll::Ready(SpliceEnd::BackendClosed),
            (Poll::Ready(Ok(())), Poll::Pending) => {
                let since = *this.client_done_at.get_or_insert(now);
                if now >= since + HALF_CLOSE_LINGER {
                    return Poll::Ready(SpliceEnd::ClientClosed);
                }
            }
            (Poll::Pending, Poll::Pending) => {}
        }
        if this.stall_deadline().is_some_and(|d| now >= d) {
            return Poll::Ready(SpliceEnd::WriteStalled);
        }
        loop {
            let mut deadline = this.last_activity + this.idle;
            if let Some(since) = this.client_done_at {
                deadline = deadline.min(since + HALF_CLOSE_LINGER);
            }
            if let Some(stall) = this.stall_deadline() {
                deadline = deadline.min(stall);
            }
            if let Some(at) = this.report_at {
                deadline = deadline.min(at);
            }
            if this.timer.deadline() != deadline {
                this.timer.as_mut().reset(deadline);
            }
            match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) if Instant::now() >= this.last_activity + this.idle => {
                    return Poll::Ready(SpliceEnd::Idle);
                }
                Poll::Ready(()) if this.stall_deadline().is_some_and(|d| Instant::now() >= d) => {
                    return Poll::Ready(SpliceEnd::WriteStalled);
                }
                Poll::Ready(())
                    if this
                        .client_done_at
                        .is_some_and(|t| Instant::now() >= t + HALF_CLOSE_LINGER) =>
                {
                    return Poll::Ready(SpliceEnd::ClientClosed);
                }
                Poll::Ready(()) => {
                    // The report's moment (it clears `report_at`), or a timer that moved.
                    this.report(Instant::now(), false);
                    continue;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for Splice {
    /// What was not reported yet goes out when the session ends.
    fn drop(&mut self) {
        self.report(Instant::now(), true);
    }
}

#[cfg(test)]
#[path = "splice_tests.rs"]
mod tests;
