//! Scriptable fake IMAP and POP3 backends for tests and benchmarks.
//!
//! A fake is a hand-rolled, line-based test double: it speaks just enough IMAP or POP3 for
//! mailgate's login relay, splice and health probes, and it can misbehave on demand in the
//! ways real servers cannot (see [`FaultMode`]). It runs in-process on tokio, one small task
//! per connection, so thousands of idle sessions cost little; it is also the benchmark backend.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mailgate_bench::fake::{FakeBackend, FakeConfig, FaultMode};
//! let fake = FakeBackend::spawn(FakeConfig::imap("mail1")).await?;
//! // point the proxy at fake.addr ...
//! fake.set_mode(FaultMode::StallAfterGreeting);
//! assert_eq!(fake.stats().logins, 0);
//! fake.shutdown().await;
//! # Ok(()) }
//! ```

mod conn;
mod imap;
mod pop3;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Which protocol a fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// IMAP4rev1 subset.
    Imap,
    /// POP3 subset.
    Pop3,
}

/// How a fake behaves. Read once per accepted connection (except [`FaultMode::Flapping`],
/// whose phase is computed at accept time from when the mode was set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultMode {
    /// A working server.
    Normal,
    /// Accept the TCP connection and never say anything (a SIGSTOPped server).
    NoGreeting,
    /// Send the greeting, then never answer anything.
    StallAfterGreeting,
    /// Reset the connection (RST, SO_LINGER 0) when a login command arrives
    /// (IMAP LOGIN/AUTHENTICATE, POP3 PASS/AUTH).
    ResetDuringLogin,
    /// IMAP: greet with `* PREAUTH` (POP3 has no such thing: normal greeting).
    PreauthGreeting,
    /// Advertise STARTTLS/STLS, answer it with the OK plus injected bytes in the same
    /// write, then stall (no TLS handshake ever happens).
    InjectAfterStartTls,
    /// Work normally, but wait this long before every response, greeting included.
    SlowResponses(Duration),
    /// Healthy for the given period, then refusing (accept + immediate RST) for the same
    /// period, alternating, starting healthy when the mode is set.
    Flapping(Duration),
    /// Greeting and CAPABILITY/CAPA work; a login command is never answered.
    LoginHangs,
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal => f.write_str("normal"),
            Self::NoGreeting => f.write_str("no-greeting"),
            Self::StallAfterGreeting => f.write_str("stall-after-greeting"),
            Self::ResetDuringLogin => f.write_str("reset-during-login"),
            Self::PreauthGreeting => f.write_str("preauth-greeting"),
            Self::InjectAfterStartTls => f.write_str("inject-after-starttls"),
            Self::SlowResponses(d) => write!(f, "slow:{}", humantime::format_duration(*d)),
            Self::Flapping(d) => write!(f, "flapping:{}", humantime::format_duration(*d)),
            Self::LoginHangs => f.write_str("login-hangs"),
        }
    }
}

impl FromStr for FaultMode {
    type Err = String;

    /// Parses the [`Display`](fmt::Display) form: `normal`, `no-greeting`,
    /// `stall-after-greeting`, `reset-during-login`, `preauth-greeting`,
    /// `inject-after-starttls`, `slow:500ms`, `flapping:5s`, `login-hangs`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let dur = |v: &str| humantime::parse_duration(v).map_err(|e| format!("{s}: {e}"));
        Ok(match s {
            "normal" => Self::Normal,
            "no-greeting" => Self::NoGreeting,
            "stall-after-greeting" => Self::StallAfterGreeting,
            "reset-during-login" => Self::ResetDuringLogin,
            "preauth-greeting" => Self::PreauthGreeting,
            "inject-after-starttls" => Self::InjectAfterStartTls,
            "login-hangs" => Self::LoginHangs,
            _ => match s.split_once(':') {
                Some(("slow", v)) => Self::SlowResponses(dur(v)?),
                Some(("flapping", v)) => Self::Flapping(dur(v)?),
                _ => return Err(format!("unknown fault mode {s:?}")),
            },
        })
    }
}

/// Everything a fake needs to start.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// IMAP or POP3.
    pub protocol: Protocol,
    /// Initial behaviour; change it later with [`FakeHandle::set_mode`].
    pub mode: FaultMode,
    /// Backend name, returned in the IMAP `ID` answer as `x-backend` and in greetings.
    pub name: String,
    /// Listen address; `127.0.0.1:0` by default.
    pub bind: SocketAddr,
    /// Size in bytes of the one message in INBOX (FETCH 1 / RETR 1).
    pub message_size: usize,
    /// POP3: advertise `XCLIENT` in CAPA and accept the command.
    pub xclient: bool,
    /// The password accepted for any user.
    pub password: String,
    /// IMAP: delay before answering a refused login (Dovecot's `auth_failure_delay`).
    pub auth_failure_delay: Duration,
}

impl FakeConfig {
    /// A normal IMAP fake named `name` on `127.0.0.1:0`.
    pub fn imap(name: &str) -> Self {
        Self {
            protocol: Protocol::Imap,
            mode: FaultMode::Normal,
            name: name.to_owned(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            message_size: 1024,
            xclient: true,
            password: "secret".to_owned(),
            auth_failure_delay: Duration::ZERO,
        }
    }

    /// A normal POP3 fake named `name` on `127.0.0.1:0`, advertising XCLIENT.
    pub fn pop3(name: &str) -> Self {
        Self {
            protocol: Protocol::Pop3,
            ..Self::imap(name)
        }
    }

    /// Same config with another initial mode.
    pub fn with_mode(mut self, mode: FaultMode) -> Self {
        self.mode = mode;
        self
    }
}

/// A point-in-time copy of a fake's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeStats {
    /// Connections accepted since start.
    pub connections: u64,
    /// Connections open right now.
    pub current_sessions: u64,
    /// Successful logins since start.
    pub logins: u64,
    /// Refused logins (wrong password) since start.
    pub failed_logins: u64,
    /// Login commands that hit [`FaultMode::ResetDuringLogin`] or [`FaultMode::LoginHangs`].
    pub sabotaged_logins: u64,
}

/// How many recorded IDs / XCLIENTs / users a fake keeps (oldest dropped first).
const RECORD_CAP: usize = 1024;

#[derive(Debug, Default)]
struct Records {
    ids: VecDeque<Vec<(String, String)>>,
    xclients: VecDeque<Vec<(String, String)>>,
    users: VecDeque<String>,
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == RECORD_CAP {
        q.pop_front();
    }
    q.push_back(v);
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    current: AtomicU64,
    logins: AtomicU64,
    failed: AtomicU64,
    sabotaged: AtomicU64,
}

/// State shared by the accept loop, the connections and the handle.
#[derive(Debug)]
struct Shared {
    protocol: Protocol,
    name: String,
    password: String,
    auth_failure_delay: Duration,
    xclient: bool,
    message: Arc<[u8]>,
    mode: Mutex<(FaultMode, Instant)>,
    counters: Counters,
    records: Mutex<Records>,
}

impl Shared {
    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The behaviour for a connection accepted now; `None` means "refuse it".
    fn effective_mode(&self) -> Option<FaultMode> {
        let (mode, since) = self
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match mode {
            FaultMode::Flapping(period) => {
                let n = since.elapsed().as_millis() / period.as_millis().max(1);
                (n % 2 == 0).then_some(FaultMode::Normal)
            }
            m => Some(m),
        }
    }

    fn record_login(&self, user: &str, ok: bool) {
        if ok {
            self.counters.logins.fetch_add(1, Ordering::Relaxed);
            push_bounded(&mut self.records().users, user.to_owned());
        } else {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record_sabotage(&self) {
        self.counters.sabotaged.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts one open connection; released on drop whatever way the connection ends.
struct SessionGuard(Arc<Shared>);

impl SessionGuard {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.counters.connections.fetch_add(1, Ordering::Relaxed);
        shared.counters.current.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(shared))
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.counters.current.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Builds the one message in INBOX: CRLF lines, no line starts with '.', exactly
/// `size` bytes (or the header's size if `size` is smaller).
fn make_message(name: &str, size: usize) -> Arc<[u8]> {
    let mut m = format!(
        "From: fake@{name}.invalid\r\nTo: user@example.com\r\nSubject: fake message\r\n\
         Message-ID: <1@{name}.invalid>\r\n\r\n"
    )
    .into_bytes();
    const LINE: usize = 78;
    while m.len() + 2 <= size {
        let n = (size - m.len() - 2).min(LINE);
        m.extend(std::iter::repeat_n(b'x', n));
        m.extend_from_slice(b"\r\n");
    }
    m.into()
}

/// Starts fakes.
#[derive(Debug)]
pub struct FakeBackend;

impl FakeBackend {
    /// Binds `config.bind` and serves in background tasks until the handle is shut down
    /// or dropped.
    pub async fn spawn(config: FakeConfig) -> std::io::Result<FakeHandle> {
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            protocol: config.protocol,
            message: make_message(&config.name, config.message_size),
            name: config.name,
            password: config.password,
            auth_failure_delay: config.auth_failure_delay,
            xclient: config.xclient,
            mode: Mutex::new((config.mode, Instant::now())),
            counters: Counters::default(),
            records: Mutex::new(Records::default()),
        });
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            Arc::clone(&shared),
            cancel.clone(),
            tracker.clone(),
        ));
        Ok(FakeHandle {
            addr,
            shared,
            cancel,
            tracker,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let guard = SessionGuard::new(&shared);
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let Some(mode) = guard.0.effective_mode() else {
                conn::reset(stream);
                return;
            };
            let _ = stream.set_nodelay(true);
            let shared = Arc::clone(&guard.0);
            tokio::select! {
                () = cancel.cancelled() => {}
                _ = conn::serve(stream, shared, mode) => {}
            }
            drop(guard);
        });
    }
}

/// A running fake. Dropping it stops the fake (listener and connections) too.
#[derive(Debug)]
pub struct FakeHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl FakeHandle {
    /// The counters now.
    pub fn stats(&self) -> FakeStats {
        let c = &self.shared.counters;
        FakeStats {
            connections: c.connections.load(Ordering::Relaxed),
            current_sessions: c.current.load(Ordering::Relaxed),
            logins: c.logins.load(Ordering::Relaxed),
            failed_logins: c.failed.load(Ordering::Relaxed),
            sabotaged_logins: c.sabotaged.load(Ordering::Relaxed),
        }
    }

    /// Changes the behaviour for connections accepted from now on.
    pub fn set_mode(&self, mode: FaultMode) {
        *self
            .shared
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (mode, Instant::now());
    }

    /// The configured mode (not the current flapping phase).
    pub fn mode(&self) -> FaultMode {
        self.shared
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// The fields of every IMAP `ID` command received (most recent last, at most 1024),
    /// e.g. `("x-originating-ip", "192.0.2.7")`. `ID NIL` records an empty list.
    pub fn client_ids(&self) -> Vec<Vec<(String, String)>> {
        self.shared.records().ids.iter().cloned().collect()
    }

    /// The `KEY=VALUE` pairs of every POP3 `XCLIENT` received (keys upper-cased).
    pub fn xclients(&self) -> Vec<Vec<(String, String)>> {
        self.shared.records().xclients.iter().cloned().collect()
    }

    /// Users that logged in successfully (most recent last, at most 1024).
    pub fn logged_in_users(&self) -> Vec<String> {
        self.shared.records().users.iter().cloned().collect()
    }

    /// Polls the counters every 5 ms until `pred` holds (true) or `timeout` passes (false).
    pub async fn wait_for(&self, pred: impl Fn(&FakeStats) -> bool, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.stats()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops listening, closes every connection and waits for the tasks to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for FakeHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_through_strings() {
        for m in [
            FaultMode::Normal,
            FaultMode::NoGreeting,
            FaultMode::StallAfterGreeting,
            FaultMode::ResetDuringLogin,
            FaultMode::PreauthGreeting,
            FaultMode::InjectAfterStartTls,
            FaultMode::SlowResponses(Duration::from_millis(250)),
            FaultMode::Flapping(Duration::from_secs(3)),
            FaultMode::LoginHangs,
        ] {
            assert_eq!(m.to_string().parse::<FaultMode>(), Ok(m));
        }
        assert!("bogus".parse::<FaultMode>().is_err());
    }

    #[test]
    fn message_has_requested_size_and_no_dot_lines() {
        for size in [10, 300, 1024, 100_000] {
            let m = make_message("t", size);
            if size >= 200 {
                assert!(
                    m.len() == size || m.len() + 1 == size,
                    "{size}: {}",
                    m.len()
                );
            }
            assert!(m.ends_with(b"\r\n"));
            assert!(!m.windows(3).any(|w| w == b"\n.\r" || w == b"\n.."));
        }
    }
}
