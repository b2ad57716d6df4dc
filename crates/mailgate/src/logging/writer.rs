//! The bounded, lossy log queue and its writer thread.
//!
//! Formatted lines go into one shared byte buffer (no allocation per line once it has
//! grown) under a mutex; the writer thread sleeps on a condition variable while the queue
//! is empty — it never spins or yields — and is woken only when it is asleep. Woken, it
//! lets lines gather for [`GATHER`], takes the whole queue at once and hands it to the sink
//! line by line (one `write` call per event, as the journal sink expects; a buffered sink
//! turns the batch into one system call), then flushes. A full queue (lines queued plus lines taken but not yet written) drops
//! the line and counts it instead of waiting.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long dropping the [`WorkerGuard`] waits for the queue to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Once woken by a line, the writer lets further lines gather this long before it takes
/// the queue: one wake-up (and, with a buffered sink, one `write`) per batch instead of
/// per line at a steady rate of sessions. The latency a log line can gain.
pub const GATHER: Duration = Duration::from_millis(2);

#[derive(Default)]
struct Queue {
    /// The queued lines, back to back.
    bytes: Vec<u8>,
    /// Where each queued line ends in `bytes`.
    ends: Vec<usize>,
    /// Lines the writer has taken and not finished writing.
    in_flight: usize,
    /// The writer sleeps and needs a wake-up.
    waiting: bool,
    /// The guard was dropped: write what is queued, then stop.
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    dropped: AtomicUsize,
    limit: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, line: &[u8]) {
        let mut q = self.lock();
        if q.ends.len() + q.in_flight >= self.limit || q.closed {
            drop(q);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.bytes.extend_from_slice(line);
        let end = q.bytes.len();
        q.ends.push(end);
        let wake = std::mem::take(&mut q.waiting);
        drop(q);
        if wake {
            self.ready.notify_one();
        }
    }
}

/// The writer handed to the formatter: cheap to clone, never blocks on the destination.
#[derive(Clone)]
pub struct NonBlocking {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NonBlocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonBlocking")
            .field("limit", &self.shared.limit)
            .finish_non_exhaustive()
    }
}

impl NonBlocking {
    /// The counter of lines dropped because the queue was full.
    pub fn error_counter(&self) -> ErrorCounter {
        ErrorCounter(self.shared.clone())
    }
}

/// Lines dropped so far by one [`NonBlocking`] writer.
#[derive(Clone)]
pub struct ErrorCounter(Arc<Shared>);

impl std::fmt::Debug for ErrorCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ErrorCounter")
            .field(&self.dropped_lines())
            .finish()
    }
}

impl ErrorCounter {
    /// Lines dropped so far.
    pub fn dropped_lines(&self) -> usize {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// One event's writer: its bytes become one queued line.
pub struct LineWriter<'a>(&'a Shared);

impl std::fmt::Debug for LineWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineWriter").finish_non_exhaustive()
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for NonBlocking {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(&self.shared)
    }
}

impl Write for NonBlocking {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.shared.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps the writer thread; dropping it writes out the queue, waiting [`FLUSH_WAIT`] at
/// most (a stalled destination is left behind).
#[must_use = "dropping the guard stops the log writer"]
pub struct WorkerGuard {
    shared: Arc<Shared>,
    done: mpsc::Receiver<()>,
}

impl std::fmt::Debug for WorkerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerGuard").finish_non_exhaustive()
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.closed = true;
        drop(q);
        self.shared.ready.notify_one();
        let _ = self.done.recv_timeout(FLUSH_WAIT);
    }
}

/// The queue of at most `limit` lines in front of `sink`, and its writer thread
/// (`thread_name`).
pub fn spawn<W: Write + Send + 'static>(
    sink: W,
    limit: usize,
    thread_name: &str,
) -> (NonBlocking, WorkerGuard) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        ready: Condvar::new(),
        dropped: AtomicUsize::new(0),
        limit: limit.max(1),
    });
    let (done_tx, done) = mpsc::channel();
    let worker = shared.clone();
    let spawned = std::thread::Builder::new()
        .name(thread_name.to_string())
        .spawn(move || {
            run(&worker, sink);
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        // No thread, no log: every line is counted as dropped.
        eprintln!("mailgate: cannot start the log writer thread: {e}");
        shared.lock().closed = true;
    }
    let guard = WorkerGuard {
        shared: shared.clone(),
        done,
    };
    (NonBlocking { shared }, guard)
}

/// The writer thread: sleep until lines are queued, write them all, repeat; after the
/// guard is dropped, write what is left and stop.
fn run<W: Write>(shared: &Shared, mut sink: W) {
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    loop {
        let mut q = shared.lock();
        while q.ends.is_empty() && !q.closed {
            q.waiting = true;
            q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        q.waiting = false;
        if q.ends.is_empty() {
            return;
        }
        if !q.closed {
            drop(q);
            std::thread::sleep(GATHER);
            q = shared.lock();
        }
        std::mem::swap(&mut q.bytes, &mut bytes);
        std::mem::swap(&mut q.ends, &mut ends);
        q.in_flight = ends.len();
        drop(q);
        let mut start = 0;
        for &end in &ends {
            let _ = sink.write_all(&bytes[start..end]);
            start = end;
        }
        let _ = sink.flush();
        bytes.clear();
        ends.clear();
        shared.lock().in_flight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_event_is_one_write_in_order_and_the_guard_flushes() {
        let sink = Sink::default();
        let (writer, guard) = spawn(sink.clone(), 1024, "test-log");
        for i in 0..500 {
            let mut w = writer.make_writer();
            w.write_all(format!("line {i}\n").as_bytes())
                .expect("write");
        }
        drop(guard);
        let got = sink.0.lock().expect("lock").clone();
        assert_eq!(got.len(), 500);
        for (i, line) in got.iter().enumerate() {
            assert_eq!(line, format!("line {i}\n").as_bytes());
        }
        assert_eq!(writer.error_counter().dropped_lines(), 0);
    }
}
