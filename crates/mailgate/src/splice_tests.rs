//! The splice against real loopback sockets.

use super::*;
use crate::bufpool::BUF_SIZE;
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
        // The client half-closes after LOGOUT; the backend still answers, then closes.
        let mut rest = Vec::new();
        backend.read_to_end(&mut rest).await.expect("rest");
        backend.write_all(b"* BYE\r\n").await.expect("bye");
        backend.shutdown().await.expect("shutdown");
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
    assert_eq!(tail, b"* BYE\r\n");
    assert_eq!(writer.await.expect("writer"), b"a2 LOGOUT\r\n");
    assert!(matches!(
        task.await.expect("splice"),
        SpliceEnd::BackendClosed
    ));
}

/// A backend that ends the session (LOGOUT answered, its own idle timeout, a restart)
/// ends it for the client too, even when the client never closes: the budget slot is
/// not held by a half-open client.
#[tokio::test]
async fn backend_close_ends_the_session_for_a_client_that_stays() {
    let (mut client, client_side) = pair().await;
    let (backend_side, mut backend) = pair().await;
    let task = tokio::spawn(Splice::new(
        Conn::Plain(client_side),
        Conn::Plain(backend_side),
        Vec::new(),
        Vec::new(),
        Duration::from_secs(600),
    ));
    backend.write_all(b"* BYE idle\r\n").await.expect("write");
    drop(backend);
    let end = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("splice ended")
        .expect("join");
    assert!(matches!(end, SpliceEnd::BackendClosed), "{end:?}");
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.expect("eof");
    assert_eq!(got, b"* BYE idle\r\n");
}

/// A client that half-closes while the backend never answers ends after the linger.
#[tokio::test(start_paused = true)]
async fn client_half_close_lingers_then_ends() {
    let (mut client, client_side) = pair().await;
    let (backend_side, _backend) = pair().await;
    let task = tokio::spawn(Splice::new(
        Conn::Plain(client_side),
        Conn::Plain(backend_side),
        Vec::new(),
        Vec::new(),
        Duration::from_secs(1800),
    ));
    client.shutdown().await.expect("shutdown");
    let started = Instant::now();
    let end = task.await.expect("join");
    assert!(matches!(end, SpliceEnd::ClientClosed), "{end:?}");
    assert!(started.elapsed() >= HALF_CLOSE_LINGER);
    assert!(started.elapsed() < Duration::from_secs(1800));
}

#[tokio::test]
async fn goodbye_waits_for_a_response_boundary() {
    let (mut client, client_side) = pair().await;
    let (backend_side, mut backend) = pair().await;
    let mut splice = Splice::new(
        Conn::Plain(client_side),
        Conn::Plain(backend_side),
        Vec::new(),
        Vec::new(),
        Duration::from_secs(600),
    )
    .with_imap_boundary();
    // Mid-literal: no BYE may go in.
    backend
        .write_all(b"* 1 FETCH (BODY[] {10}\r\nabc")
        .await
        .expect("write");
    assert!(
        splice
            .until_quiet(Duration::from_millis(100), Duration::from_secs(5))
            .await
            .is_none()
    );
    splice
        .goodbye(Some(b"* BYE x\r\n"), Duration::from_secs(1))
        .await;
    drop(splice);
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.expect("eof");
    assert_eq!(got, b"* 1 FETCH (BODY[] {10}\r\nabc");

    let (mut client, client_side) = pair().await;
    let (backend_side, mut backend) = pair().await;
    let mut splice = Splice::new(
        Conn::Plain(client_side),
        Conn::Plain(backend_side),
        Vec::new(),
        Vec::new(),
        Duration::from_secs(600),
    )
    .with_imap_boundary();
    backend.write_all(b"* 1 EXISTS\r\n").await.expect("write");
    assert!(
        splice
            .until_quiet(Duration::from_millis(100), Duration::from_secs(5))
            .await
            .is_none()
    );
    splice
        .goodbye(Some(b"* BYE x\r\n"), Duration::from_secs(1))
        .await;
    drop(splice);
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.expect("eof");
    assert_eq!(got, b"* 1 EXISTS\r\n* BYE x\r\n");
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

/// A client that stops reading while the backend has data is cut at the write-stall limit;
/// an idle session (IMAP IDLE) writes nothing and is never "stalled".
#[tokio::test]
async fn a_peer_that_does_not_read_is_cut_at_the_write_stall_limit() {
    let (_client, client_side) = pair().await;
    let (backend_side, mut backend) = pair().await;
    let task = tokio::spawn(
        Splice::new(
            Conn::Plain(client_side),
            Conn::Plain(backend_side),
            Vec::new(),
            Vec::new(),
            Duration::from_secs(600),
        )
        .with_write_stall(Duration::from_millis(300)),
    );
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        // Far more than the socket buffers hold; the client never reads.
        for _ in 0..512 {
            if backend.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let end = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("ended by itself")
        .expect("join");
    assert!(matches!(end, SpliceEnd::WriteStalled), "{end:?}");
    writer.abort();
}

/// Records what a splice reports, and how often.
#[derive(Debug, Clone, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<(u64, u64)>>>);

impl ByteSink for Recorder {
    fn add(&self, up: u64, down: u64) {
        self.0.lock().expect("lock").push((up, down));
    }
}

impl Recorder {
    fn calls(&self) -> Vec<(u64, u64)> {
        self.0.lock().expect("lock").clone()
    }
    fn total(&self) -> (u64, u64) {
        self.calls()
            .iter()
            .fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1))
    }
}

/// Bytes show up in the counters while the session runs: a few bytes within the report
/// interval (the splice wakes for them while idle), bulk in batches, not per read, and
/// everything once the splice is dropped.
#[tokio::test]
async fn bytes_are_reported_while_running_in_batches() {
    let (mut client, client_side) = pair().await;
    let (backend_side, mut backend) = pair().await;
    let rec = Recorder::default();
    let splice = Splice::new(
        Conn::Plain(client_side),
        Conn::Plain(backend_side),
        Vec::new(),
        Vec::new(),
        Duration::from_secs(600),
    )
    .with_byte_sink(rec.clone());
    let task = tokio::spawn(async move {
        let mut splice = splice;
        let end = (&mut splice).await;
        (end, splice.bytes_up(), splice.bytes_down())
    });
    client.write_all(b"a1 NOOP\r\n").await.expect("write");
    let mut got = [0u8; 9];
    backend.read_exact(&mut got).await.expect("read");
    // Nothing else moves; the report still comes (bound: the interval + a generous margin).
    let waited = tokio::time::Instant::now();
    while rec.total() != (9, 0) {
        assert!(
            waited.elapsed() < FLUSH_INTERVAL + Duration::from_secs(10),
            "not reported: {:?}",
            rec.calls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Bulk: 8 MiB backend → client in small writes.
    let started = tokio::time::Instant::now();
    let big = vec![7u8; 8 * 1024 * 1024];
    let writer = tokio::spawn(async move {
        for chunk in big.chunks(4096) {
            backend.write_all(chunk).await.expect("backend write");
        }
        backend.shutdown().await.expect("shutdown");
        backend
    });
    let mut sink = Vec::new();
    client.read_to_end(&mut sink).await.expect("client read");
    assert_eq!(sink.len(), 8 * 1024 * 1024);
    let _backend = writer.await.expect("writer");
    let (end, up, down) = task.await.expect("splice");
    assert!(matches!(end, SpliceEnd::BackendClosed), "{end:?}");
    assert_eq!((up, down), (9, 8 * 1024 * 1024));
    // Dropped: everything reported, exactly once.
    assert_eq!(rec.total(), (9, 8 * 1024 * 1024));
    let batches = rec.calls().len() as u64;
    let by_time = started.elapsed().as_secs() + 1;
    let most = 1 + down / FLUSH_BYTES + 1 + by_time;
    assert!(
        batches <= most,
        "{batches} reports for {down} bytes (at most {most})"
    );
}
