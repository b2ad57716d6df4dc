//! The kick registry: closing spliced sessions of a backend, a domain or a user, spread
//! over a window, each at a quiet moment where possible.
//!
//! Contract with the session side:
//! 1. When a session is spliced it registers with [`KickRegistry::register`] and keeps the
//!    [`KickHandle`] for its life (dropping it unregisters), plus an [`Activity`] that its
//!    copy loops [`Activity::touch`] whenever bytes move.
//! 2. The splice loop `select!`s on [`KickHandle::close_signal`] next to its reads and
//!    writes. The future resolves with the [`KickRequest`] when it is time to close:
//!    never before the request's scheduled time `at`; then as soon as no bytes moved for
//!    `quiet`; at the latest at `at + max_wait`, even mid-transfer.
//! 3. The session then closes both sides (IMAP: it may send `* BYE [UNAVAILABLE] ...`
//!    first, only if it knows it is between responses; otherwise just close) and logs the
//!    request's `reason` in its summary.
//!
//! A kick is delivered to every matching session at once, with its own `at` inside the
//! window: sessions are shuffled and given one slot each of `window / n`, at a random point
//! inside the slot. So closes are spread evenly and never all at once, and no background
//! task is needed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// What a registered session is: where it is spliced and whose mailbox it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Registry-assigned id.
    pub id: u64,
    /// Backend the session is spliced to.
    pub backend: String,
    /// Domain of the routing user (lower case, normalized as the router saw it).
    pub domain: String,
    /// Routing user (`local@domain`).
    pub user: String,
}

/// Which sessions to kick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KickSelector {
    /// All sessions spliced to this backend.
    Backend(String),
    /// All sessions of this domain (case-insensitive).
    Domain(String),
    /// All sessions of this user (case-insensitive).
    User(String),
}

impl KickSelector {
    /// Does the selector match `info`?
    pub fn matches(&self, info: &SessionInfo) -> bool {
        match self {
            KickSelector::Backend(b) => info.backend == *b,
            KickSelector::Domain(d) => info.domain.eq_ignore_ascii_case(d.trim_end_matches('.')),
            KickSelector::User(u) => info.user.eq_ignore_ascii_case(u),
        }
    }

    fn reason(&self) -> KickReason {
        match self {
            KickSelector::Backend(_) => KickReason::Backend,
            KickSelector::Domain(_) => KickReason::Domain,
            KickSelector::User(_) => KickReason::User,
        }
    }
}

/// Why a session is kicked (stable label for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KickReason {
    /// Operator kicked the backend.
    Backend,
    /// Operator kicked the domain.
    Domain,
    /// Operator kicked the user.
    User,
    /// The routing file changed where this session's mailbox lives.
    RouteChanged,
}

impl KickReason {
    /// Stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            KickReason::Backend => "kick_backend",
            KickReason::Domain => "kick_domain",
            KickReason::User => "kick_user",
            KickReason::RouteChanged => "route_changed",
        }
    }
}

impl fmt::Display for KickReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to close, delivered to one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KickRequest {
    /// Why.
    pub reason: KickReason,
    /// Not before this moment.
    pub at: Instant,
    /// Close once no bytes moved for this long ...
    pub quiet: Duration,
    /// ... or at the latest at `at + max_wait`.
    pub max_wait: Duration,
}

/// Bytes-moved marker shared between a session's copy loops and its kick wait. Touching
/// it is one relaxed atomic increment: no clock read on the data path.
#[derive(Debug, Default)]
pub struct Activity {
    moved: AtomicU64,
}

impl Activity {
    /// A fresh marker.
    pub fn new() -> Self {
        Activity::default()
    }

    /// Bytes moved (call after each read or write that transferred data).
    pub fn touch(&self) {
        self.moved.fetch_add(1, Ordering::Relaxed);
    }

    fn mark(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Entry {
    info: Arc<SessionInfo>,
    tx: watch::Sender<Option<KickRequest>>,
}

#[derive(Debug)]
struct Inner {
    next_id: AtomicU64,
    sessions: Mutex<HashMap<u64, Entry>>,
    quiet: Duration,
    max_wait: Duration,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The registry of spliced sessions that can be kicked. Clone it freely.
#[derive(Debug, Clone)]
pub struct KickRegistry {
    inner: Arc<Inner>,
}

impl KickRegistry {
    /// A registry whose kicks wait for `quiet` idle time, at most `max_wait` past their
    /// scheduled time (`HealthSettings::kick_quiet` / `kick_max_wait`).
    pub fn new(quiet: Duration, max_wait: Duration) -> Self {
        KickRegistry {
            inner: Arc::new(Inner {
                next_id: AtomicU64::new(1),
                sessions: Mutex::new(HashMap::new()),
                quiet,
                max_wait,
            }),
        }
    }

    /// Register a spliced session. Keep the handle for the session's life.
    pub fn register(
        &self,
        backend: impl Into<String>,
        domain: impl Into<String>,
        user: impl Into<String>,
    ) -> KickHandle {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(SessionInfo {
            id,
            backend: backend.into(),
            domain: domain.into(),
            user: user.into(),
        });
        let (tx, rx) = watch::channel(None);
        self.inner.lock().insert(
            id,
            Entry {
                info: Arc::clone(&info),
                tx,
            },
        );
        KickHandle {
            info,
            rx,
            registry: Arc::clone(&self.inner),
        }
    }

    /// Registered sessions.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// No registered sessions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sessions matching `pred` (e.g. those whose route changed in a reload diff).
    pub fn sessions_where(&self, pred: impl Fn(&SessionInfo) -> bool) -> Vec<SessionInfo> {
        self.inner
            .lock()
            .values()
            .filter(|e| pred(&e.info))
            .map(|e| SessionInfo::clone(&e.info))
            .collect()
    }

    /// Call `f` with every registered session, under the registry's lock: keep `f` short
    /// (count, copy a name). Used by `/sessions`, kick dry runs and the move planner.
    pub fn for_each(&self, mut f: impl FnMut(&SessionInfo)) {
        for e in self.inner.lock().values() {
            f(&e.info);
        }
    }

    /// The sessions `selector` matches, counted by backend and domain (and by user when
    /// `users`), without kicking any: what [`KickRegistry::kick`] would close now.
    pub fn tally(&self, selector: &KickSelector, users: bool) -> SessionTally {
        let mut t = SessionTally::default();
        self.for_each(|info| {
            if selector.matches(info) {
                t.add(info, users);
            }
        });
        t
    }

    /// Kick the sessions `selector` matches, spread over `window`. Returns how many.
    pub fn kick(&self, selector: &KickSelector, window: Duration) -> usize {
        self.kick_where(|i| selector.matches(i), window, selector.reason())
    }

    /// Kick the sessions matching `pred`, spread over `window`, e.g. after a reload:
    /// `kick_where(|s| diff.moved(&s.domain, &s.user), window, KickReason::RouteChanged)`.
    /// A session that already has an earlier kick scheduled keeps it. Returns how many
    /// sessions matched.
    pub fn kick_where(
        &self,
        pred: impl Fn(&SessionInfo) -> bool,
        window: Duration,
        reason: KickReason,
    ) -> usize {
        let now = Instant::now();
        let map = self.inner.lock();
        let mut targets: Vec<&Entry> = map.values().filter(|e| pred(&e.info)).collect();
        fastrand::shuffle(&mut targets);
        let n = targets.len();
        for (i, entry) in targets.iter().enumerate() {
            let slot = (i as f64 + fastrand::f64()) / n as f64;
            let request = KickRequest {
                reason,
                at: now + window.mul_f64(slot),
                quiet: self.inner.quiet,
                max_wait: self.inner.max_wait,
            };
            entry.tx.send_if_modified(|current| match current {
                Some(existing) if existing.at <= request.at => false,
                _ => {
                    *current = Some(request);
                    true
                }
            });
        }
        if n > 0 {
            tracing::info!(sessions = n, reason = reason.as_str(), window = ?window, "kick scheduled");
        }
        n
    }
}

/// Sessions counted by backend, domain and (when asked) user; sorted maps, so listings
/// come out in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionTally {
    /// Sessions counted.
    pub total: usize,
    /// Backend → domain → sessions.
    pub by_backend: BTreeMap<String, BTreeMap<String, usize>>,
    /// (backend, domain) → user → sessions; empty unless users were asked for.
    pub users: BTreeMap<(String, String), BTreeMap<String, usize>>,
}

impl SessionTally {
    /// Count one session (and its user when `users`).
    pub fn add(&mut self, info: &SessionInfo, users: bool) {
        self.total += 1;
        *self
            .by_backend
            .entry(info.backend.clone())
            .or_default()
            .entry(info.domain.clone())
            .or_default() += 1;
        if users {
            *self
                .users
                .entry((info.backend.clone(), info.domain.clone()))
                .or_default()
                .entry(info.user.clone())
                .or_default() += 1;
        }
    }

    /// Sessions on `backend`.
    pub fn backend_total(&self, backend: &str) -> usize {
        self.by_backend.get(backend).map_or(0, |d| d.values().sum())
    }
}

/// A registered session's end of the kick channel. Dropping it unregisters the session.
#[derive(Debug)]
pub struct KickHandle {
    info: Arc<SessionInfo>,
    rx: watch::Receiver<Option<KickRequest>>,
    registry: Arc<Inner>,
}

impl KickHandle {
    /// What was registered.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The pending kick, if any (non-blocking).
    pub fn pending(&self) -> Option<KickRequest> {
        *self.rx.borrow()
    }

    /// Resolves as soon as a kick is requested (before it is due). Cancel-safe.
    pub async fn requested(&self) -> KickRequest {
        let mut rx = self.rx.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => match *r {
                Some(request) => request,
                None => std::future::pending().await,
            },
            // The registry owns the sender for as long as this handle exists.
            Err(_) => std::future::pending().await,
        }
    }

    /// Resolves when the session should close now: after a kick's scheduled time, once
    /// `activity` saw no bytes for `quiet`, or at the latest `max_wait` later. Cancel-safe
    /// (dropping and re-creating the future restarts the quiet wait only).
    ///
    /// Every spliced session holds this future for its whole life, so until a kick is
    /// requested it holds only the channel's wait; the timers of a kick in progress are
    /// boxed once one is.
    pub async fn close_signal(&self, activity: &Activity) -> KickRequest {
        let mut rx = self.rx.clone();
        while rx.borrow_and_update().is_none() {
            if rx.changed().await.is_err() {
                // The registry owns the sender for as long as this handle exists.
                std::future::pending::<()>().await;
            }
        }
        Box::pin(close_when_due(rx, activity)).await
    }
}

/// [`KickHandle::close_signal`] once a kick is pending.
async fn close_when_due(
    mut rx: watch::Receiver<Option<KickRequest>>,
    activity: &Activity,
) -> KickRequest {
    let request = loop {
        let current = *rx.borrow_and_update();
        match current {
            None => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            // Wait for the scheduled time; an earlier kick arriving meanwhile wins.
            Some(r) => tokio::select! {
                _ = tokio::time::sleep_until(r.at) => break r,
                changed = rx.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(r.at).await;
                        break r;
                    }
                }
            },
        }
    };
    let deadline = request.at + request.max_wait;
    let quiet = request.quiet.max(Duration::from_millis(1));
    loop {
        let mark = activity.mark();
        let now = Instant::now();
        if now >= deadline {
            return request;
        }
        tokio::time::sleep_until(deadline.min(now + quiet)).await;
        if activity.mark() == mark && Instant::now() < deadline {
            return request;
        }
    }
}

impl Drop for KickHandle {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.info.id);
    }
}

#[cfg(test)]
#[path = "kick_tests.rs"]
mod tests;
