//! Copying bytes both ways between client and backend, unchanged, without holding a
//! buffer while a session is idle.
//!
//! `tokio::io::copy_bidirectional` keeps two 8 KiB buffers per session for its whole
//! life (about 1.6 GB for 100,000 idle IMAP IDLE sessions). [`Splice`] instead waits for
//! the socket to become readable, borrows a buffer from a small per-thread pool only while
//! data is moving, and gives it back as soon as the source would block.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use mailgate_health::Activity;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::conn::Conn;

/// Size of one splice buffer while data moves (64 KiB: a quarter of the syscalls of 16 KiB
/// on bulk transfers; measured in docs/performance.md).
const BUF_SIZE: usize = 64 * 1024;
/// Buffers kept per worker thread for reuse (at most 4 MiB per thread).
const POOL_MAX: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn take_buf() -> Vec<u8> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; BUF_SIZE])
}

fn give_buf(buf: Vec<u8>) {
    // Only full-size buffers go back: the initial pipelined bytes arrive in a Vec of their
    // own length, and reusing one of those would shrink every later read.
    if buf.len() != BUF_SIZE {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(buf);
        }
    });
}

/// How a splice ended.
#[derive(Debug)]
pub enum SpliceEnd {
    /// Both directions reached end of stream.
    Closed,
    /// No bytes moved in either direction for the idle limit.
    Idle,
    /// A read or write failed (reset, broken pipe, TLS error).
    Error(io::Error),
}

/// One direction of the splice.
#[derive(Debug, Default)]
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
    ) -> Poll<io::Result<()>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if let Some(buf) = &self.buf {
                if self.start < self.end {
                    let n = ready!(Pin::new(&mut *dst).poll_write(cx, &buf[self.start..self.end]))?;
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
            .poll(cx, &mut this.client, &mut this.backend, &mut moved);
        let down = this
            .down
            .poll(cx, &mut this.backend, &mut this.client, &mut moved);
        if moved {
            this.last_activity = Instant::now();
            if let Some(a) = &this.activity {
                a.touch();
            }
        }
        match (up, down) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => {
                return Poll::Ready(SpliceEnd::Error(e));
            }
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => return Poll::Ready(SpliceEnd::Closed),
            _ => {}
        }
        loop {
            let deadline = this.last_activity + this.idle;
            if this.timer.deadline() != deadline {
                this.timer.as_mut().reset(deadline);
            }
            match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) if Instant::now() >= this.last_activity + this.idle => {
                    return Poll::Ready(SpliceEnd::Idle);
                }
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[test]
    fn pool_never_hands_out_short_buffers() {
        give_buf(vec![0; 77]);
        assert_eq!(take_buf().len(), BUF_SIZE);
        give_buf(vec![0; BUF_SIZE]);
        assert_eq!(take_buf().len(), BUF_SIZE);
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (b, _) = l.accept().await.expect("accept");
        (a, b)
    }

    #[tokio::test]
    async fn copies_both_ways_unchanged_with_initial_bytes_and_half_close() {
        let (mut client, client_side) = pair().await;
        let (backend_side, mut backend) = pair().await;
        let splice = Splice::new(
            Conn::Plain(client_side),
            Conn::Plain(backend_side),
            b"pipelined\r\n".to_vec(),
            b"a1 OK logged in\r\n".to_vec(),
            Duration::from_secs(60),
        );
        let task = tokio::spawn(splice);
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let big2 = big.clone();
        let writer = tokio::spawn(async move {
            backend.write_all(&big2).await.expect("backend write");
            let mut got = vec![0u8; 11];
            backend.read_exact(&mut got).await.expect("pipelined");
            assert_eq!(&got, b"pipelined\r\n");
            backend.shutdown().await.expect("shutdown");
            let mut rest = Vec::new();
            backend.read_to_end(&mut rest).await.expect("rest");
            rest
        });
        let mut head = vec![0u8; 17];
        client.read_exact(&mut head).await.expect("head");
        assert_eq!(&head, b"a1 OK logged in\r\n");
        let mut got = vec![0u8; big.len()];
        client.read_exact(&mut got).await.expect("body");
        assert!(got == big, "bytes changed in transit");
        client.write_all(b"a2 LOGOUT\r\n").await.expect("write");
        client.shutdown().await.expect("client shutdown");
        let mut tail = Vec::new();
        client.read_to_end(&mut tail).await.expect("eof");
        assert!(tail.is_empty());
        assert_eq!(writer.await.expect("writer"), b"a2 LOGOUT\r\n");
        assert!(matches!(task.await.expect("splice"), SpliceEnd::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_limit_ends_the_splice() {
        let (_client, client_side) = pair().await;
        let (backend_side, _backend) = pair().await;
        let splice = Splice::new(
            Conn::Plain(client_side),
            Conn::Plain(backend_side),
            Vec::new(),
            Vec::new(),
            Duration::from_secs(1800),
        );
        let end = splice.await;
        assert!(matches!(end, SpliceEnd::Idle));
    }
}
