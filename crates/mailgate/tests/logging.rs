//! Logging that cannot stall the proxy (issue 11, item 6).
//!
//! - A log destination that blocks (a stuck journald) neither blocks the code that logs
//!   nor loses count: every line is either written or counted as dropped.
//! - With the process's log stalled, sessions are still served, and
//!   `mailgate_log_lines_dropped_total` says how many lines were lost.
//! - `mailgate run` writes no ANSI escape codes when stderr is a file, and does when it is a
//!   terminal; the last line ("shutdown complete") is flushed at exit.

mod common;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{Back, CAP, Client, Proxy, fake};
use mailgate::logging;
use mailgate_config::{LogConfig, LogFormat};
use mailgate_testkit::fake::FaultMode;
use tracing_subscriber::EnvFilter;

/// A log destination that blocks every write until it is released, like a stalled
/// journald; then it keeps what it was given.
#[derive(Clone, Default)]
struct StalledSink {
    open: Arc<(Mutex<bool>, Condvar)>,
    written: Arc<Mutex<Vec<u8>>>,
    writes: Arc<AtomicUsize>,
}

impl StalledSink {
    fn release(&self) {
        let (lock, cv) = &*self.open;
        *lock.lock().expect("lock") = true;
        cv.notify_all();
    }

    fn lines(&self) -> usize {
        self.written
            .lock()
            .expect("lock")
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.written.lock().expect("lock")).into_owned()
    }
}

impl Write for StalledSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let (lock, cv) = &*self.open;
        let mut open = lock.lock().expect("lock");
        while !*open {
            open = cv.wait(open).expect("wait");
        }
        self.written.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Poll `cond` until it holds or `limit` passes.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

#[test]
fn a_stalled_destination_never_blocks_the_caller_and_every_line_is_accounted_for() {
    const QUEUE: usize = 64;
    const LINES: usize = 20_000;
    let sink = StalledSink::default();
    let (writer, guard) = logging::non_blocking(sink.clone(), QUEUE);
    let counter = writer.error_counter();
    let subscriber = logging::subscriber(LogFormat::Text, EnvFilter::new("info"), writer, false);

    // Log from a thread of its own: if logging blocked, this thread would hang in the
    // stalled write and never report back.
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..LINES {
                tracing::info!(i, user_visible = "x", "line");
            }
        });
        let _ = done_tx.send(start.elapsed());
    });
    let took = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("logging blocked on a stalled destination");
    eprintln!("{LINES} lines logged against a stalled destination in {took:?}");

    // The writer thread is stuck in its first write: one line there, QUEUE in the queue,
    // the rest dropped and counted.
    assert!(wait_for(CAP, || sink.writes.load(Ordering::SeqCst) >= 1));
    let dropped = counter.dropped_lines();
    assert!(
        (LINES - QUEUE - 1..=LINES - QUEUE).contains(&dropped),
        "dropped {dropped} of {LINES} with a queue of {QUEUE}"
    );

    // Once the destination moves again, everything that was not dropped arrives.
    sink.release();
    drop(guard);
    assert!(
        wait_for(CAP, || sink.lines() + dropped == LINES),
        "written {} + dropped {dropped} != {LINES}",
        sink.lines()
    );
    assert_eq!(
        counter.dropped_lines(),
        dropped,
        "lines dropped after the stall ended"
    );
    let text = sink.text();
    assert!(
        text.contains(" INFO ") && text.contains("line"),
        "{text:.200}"
    );
    assert!(!text.contains('\x1b'), "ANSI codes without a terminal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_served_while_the_log_is_stalled() {
    // The process-wide subscriber of this test binary, writing to a stalled destination.
    let sink = StalledSink::default();
    let cfg = LogConfig {
        level: "info".into(),
        format: LogFormat::Json,
    };
    let guard = logging::init_with_sink(&cfg, sink.clone(), false);

    let backend = fake(FaultMode::Normal).await;
    let proxy = Proxy::start(
        &[Back::imap("mail1", &backend, "example.com")],
        "",
        "",
        false,
    )
    .await;
    // Fill the queue and then some: from here on every line is dropped.
    let burst = logging::QUEUE_LINES + 5_000;
    for i in 0..burst {
        tracing::info!(i, "filler");
    }
    let before = logging::dropped_lines();
    assert!(before >= 4_000, "dropped {before}");

    // Whole sessions, each logging as it goes (accept, login, close), within the cap.
    let start = Instant::now();
    for n in 0..5 {
        let mut c = Client::connect(proxy.imap).await;
        let caps = c.imap("a", "CAPABILITY").await;
        assert!(caps.starts_with("a OK"), "{caps}");
        let login = c.imap_login("b", "alice@example.com").await;
        assert!(login.starts_with("b OK"), "session {n}: {login}");
        let out = c.imap("c", "LOGOUT").await;
        assert!(out.starts_with("c OK") || out.is_empty(), "{out}");
    }
    eprintln!(
        "5 sessions through the proxy with the log stalled: {:?}",
        start.elapsed()
    );
    assert!(
        wait_for(CAP, || logging::dropped_lines() > before),
        "the sessions' own lines were not counted"
    );

    // The counter is exported.
    let text = proxy.shared.metrics().encode();
    let exported: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("mailgate_log_lines_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no mailgate_log_lines_dropped_total in\n{text}"));
    assert!(
        exported > before,
        "exported {exported}, dropped before the sessions {before}"
    );

    proxy.stop().await;
    sink.release();
    drop(guard);
    assert!(
        wait_for(CAP, || sink.text().contains("\"filler\"")),
        "queued lines were not flushed"
    );
}

// --- the binary: colour only on a terminal, flush at exit ---------------------------------

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mailgate"))
}

/// A config that runs with no backend reachable and nothing but loopback.
fn write_config(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("routing.yaml"),
        "backends:\n  mail1:\n    host: 127.0.0.1\n    imap_port: 9\ndomains:\n  example.com: mail1\n",
    )
    .expect("write routing");
    let cfg = dir.join("mailgate.yaml");
    std::fs::write(
        &cfg,
        "listen:\n  imap: 127.0.0.1:0\nrouting_file: routing.yaml\nhealth:\n  interval: 60s\n\
         log:\n  level: info\n  format: text\nshutdown_grace: 1s\n",
    )
    .expect("write config");
    cfg
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -TERM {pid}");
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

#[test]
fn no_colour_codes_when_stderr_is_a_file_and_the_last_line_is_flushed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path());
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(bin())
        .args(["run", "-c"])
        .arg(&cfg)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create log"))
        .spawn()
        .expect("spawn mailgate");
    let up = wait_for(Duration::from_secs(30), || read(&log).contains("listening"));
    sigterm(child.id());
    let exited = wait_for(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let text = read(&log);
    assert!(up, "mailgate did not start: {text}");
    assert!(exited, "mailgate did not exit on SIGTERM: {text}");
    assert!(text.contains(" INFO "), "{text}");
    assert!(!text.contains('\x1b'), "ANSI codes in a file: {text:?}");
    assert!(
        text.contains("shutdown complete"),
        "last line lost at exit: {text}"
    );
}

#[test]
fn colour_codes_when_stderr_is_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        // CI installs every tool a test needs: there a missing one fails (README).
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "util-linux `script` is not installed, and CI=true"
        );
        eprintln!("skipped: util-linux `script` (to get a terminal) is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path());
    let out = dir.path().join("tty.out");
    // `script` gives the command a pseudo-terminal as stdin, stdout and stderr, and copies
    // what it prints to our file; the shell prints its PID first, then becomes mailgate.
    let inner = format!(
        "echo PID=$$; exec '{}' run -c '{}'",
        bin().display(),
        cfg.display()
    );
    let mut script = Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("create"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn script");
    let up = wait_for(Duration::from_secs(30), || read(&out).contains("listening"));
    let text = read(&out);
    let pid = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("PID="))
        .and_then(|p| p.trim().parse::<u32>().ok());
    if let Some(pid) = pid {
        sigterm(pid);
    }
    let exited = wait_for(Duration::from_secs(30), || {
        matches!(script.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = script.kill();
    }
    assert!(
        up && pid.is_some(),
        "mailgate did not start on a terminal: {text:?}"
    );
    assert!(text.contains("\x1b["), "no colour on a terminal: {text:?}");
}
