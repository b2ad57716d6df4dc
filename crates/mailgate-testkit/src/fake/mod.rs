//! Scriptable fake IMAP and POP3 backends for tests and benchmarks.
//!
//! A fake is a hand-rolled, line-based test double: it speaks just enough IMAP or POP3 for
//! mailgate's login relay, splice and health probes, and it can misbehave on demand in the
//! ways real servers cannot (see [`FaultMode`]). It speaks plain TCP, implicit TLS or
//! STARTTLS/STLS ([`FakeConfig::tls`], with a self-signed certificate whose PEM
//! [`FakeHandle::cert_pem`] gives a test for its CA file). It runs in-process on tokio, one
//! small task per connection, so thousands of idle sessions cost little; it is also the
//! benchmark backend.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mailgate_testkit::fake::{FakeBackend, FakeConfig, FaultMode};
//! let fake = FakeBackend::spawn(FakeConfig::imap("mail1")).await?;
//! // point the proxy at fake.addr ...
//! fake.set_mode(FaultMode::StallAfterGreeting);
//! assert_eq!(fake.stats().logins, 0);
//! fake.shutdown().await;
//! # Ok(()) }
//! ```

mod conn;
mod imap;
mod mode;
mod pop3;
mod tls;

pub use crate::client::TlsMode;
pub use mode::{FaultMode, TempCode};
pub use tls::TlsIdentity;

use std::collections::VecDeque;
use std::net::SocketAddr;
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
    /// TLS towards the fake: none, implicit (handshake right after accept) or STARTTLS
    /// (IMAP `STARTTLS` in the greeting's capability code and in CAPABILITY, POP3 `STLS`
    /// in CAPA).
    pub tls: TlsMode,
    /// The certificate to serve; `None` generates a self-signed one for `localhost` /
    /// `127.0.0.1` / `::1` at spawn (when `tls` is not `None`). See
    /// [`FakeHandle::cert_pem`].
    pub tls_identity: Option<TlsIdentity>,
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
            tls: TlsMode::None,
            tls_identity: None,
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

    /// Same config with TLS towards the fake (`identity: None` generates a certificate).
    pub fn with_tls(mut self, tls: TlsMode, identity: Option<TlsIdentity>) -> Self {
        self.tls = tls;
        self.tls_identity = identity;
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
    /// Login commands that hit [`FaultMode::ResetDuringLogin`], [`FaultMode::LoginHangs`],
    /// [`FaultMode::LoginTempFail`] or [`FaultMode::GarbageVerdict`].
    pub sabotaged_logins: u64,
    /// TLS handshakes completed (implicit or after STARTTLS/STLS).
    pub tls_handshakes: u64,
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
    tls_handshakes: AtomicU64,
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
    tls_mode: TlsMode,
    tls: Option<Arc<rustls::ServerConfig>>,
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

    fn record_tls_handshake(&self) {
        self.counters.tls_handshakes.fetch_add(1, Ordering::Relaxed);
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
        let identity = match (config.tls, config.tls_identity) {
            (TlsMode::None, _) => None,
            (_, Some(id)) => Some(id),
            (_, None) => Some(TlsIdentity::localhost()?),
        };
        let tls = identity
            .as_ref()
            .map(TlsIdentity::server_config)
            .transpose()?;
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            protocol: config.protocol,
            message: make_message(&config.name, config.message_size),
            tls_mode: config.tls,
            tls,
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
            cert_pem: identity.map(|id| id.cert_pem),
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
                _ = serve(stream, shared, mode) => {}
            }
            drop(guard);
        });
    }
}

/// Serves one accepted connection in the given mode until either side closes.
async fn serve(stream: tokio::net::TcpStream, shared: Arc<Shared>, mode: FaultMode) {
    let Some(mut conn) = conn::accept(stream, shared, mode).await else {
        return;
    };
    let _ = match conn.shared.protocol {
        Protocol::Imap => imap::run(&mut conn).await,
        Protocol::Pop3 => pop3::run(&mut conn).await,
    };
}

/// A running fake. Dropping it stops the fake (listener and connections) too.
#[derive(Debug)]
pub struct FakeHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    cert_pem: Option<String>,
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
            tls_handshakes: c.tls_handshakes.load(Ordering::Relaxed),
        }
    }

    /// The PEM certificate it serves (a CA file for clients), if it speaks TLS.
    pub fn cert_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    /// How TLS towards it works.
    pub fn tls(&self) -> TlsMode {
        self.shared.tls_mode
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
