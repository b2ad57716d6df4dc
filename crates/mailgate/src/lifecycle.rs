//! The process's phases as sessions see them: serving, handing over (a new process took
//! over the listeners: stop accepting, sessions go on), shutting down (stop accepting,
//! BYE to pre-auth sessions), forced (the grace is over: close spliced sessions), and the
//! tracker that shutdown waits on. Also hands out session ids, and carries the requests
//! for a binary upgrade (`SIGUSR2`, `POST /upgrade`) to the one task that runs them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a finished upgrade attempt reports to whoever asked for it.
pub type UpgradeResult = Result<UpgradeDone, String>;

/// A new process took over the listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradeDone {
    /// The new process.
    pub new_pid: u32,
    /// This process (which now drains its sessions).
    pub old_pid: u32,
}

/// One request for an upgrade; the reply is dropped when nobody waits for it (SIGUSR2).
#[derive(Debug)]
pub struct UpgradeRequest {
    /// Where the outcome goes.
    pub reply: Option<oneshot::Sender<UpgradeResult>>,
}

/// Shutdown signals and the session tracker.
#[derive(Debug)]
pub struct Lifecycle {
    shutdown: CancellationToken,
    accept_stop: CancellationToken,
    force: CancellationToken,
    tracker: TaskTracker,
    session_ids: AtomicU64,
    grace_served: AtomicBool,
    upgrade_tx: mpsc::Sender<UpgradeRequest>,
    upgrade_rx: Mutex<Option<mpsc::Receiver<UpgradeRequest>>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new()
    }
}

impl Lifecycle {
    /// Serving; session ids start from the clock so that restarts do not reuse them.
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() << 20)
            .unwrap_or(0);
        let (upgrade_tx, upgrade_rx) = mpsc::channel(4);
        Lifecycle {
            shutdown: CancellationToken::new(),
            accept_stop: CancellationToken::new(),
            force: CancellationToken::new(),
            tracker: TaskTracker::new(),
            session_ids: AtomicU64::new(seed),
            grace_served: AtomicBool::new(false),
            upgrade_tx,
            upgrade_rx: Mutex::new(Some(upgrade_rx)),
        }
    }

    /// A new session id.
    pub fn next_session_id(&self) -> u64 {
        self.session_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// True once shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Resolves when shutdown begins.
    pub async fn shutting_down(&self) {
        self.shutdown.cancelled().await
    }

    /// True once this process stopped accepting (shutdown, or a new process took over).
    pub fn is_handed_over(&self) -> bool {
        self.accept_stop.is_cancelled() && !self.shutdown.is_cancelled()
    }

    /// Resolves when the accept loops must stop: at shutdown, or when a new process took
    /// over the listeners.
    pub async fn accepting_stopped(&self) {
        self.accept_stop.cancelled().await
    }

    /// Resolves when the shutdown grace is over.
    pub async fn forced(&self) {
        self.force.cancelled().await
    }

    /// A token cancelled when the grace is over (for background tasks).
    pub fn force_token(&self) -> CancellationToken {
        self.force.child_token()
    }

    /// Run a session on the tracker that shutdown waits for.
    pub fn spawn_session<F>(&self, session: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(session);
    }

    /// Sessions still running.
    pub fn sessions(&self) -> usize {
        self.tracker.len()
    }

    /// Ask for a binary upgrade. `None` when one cannot even be queued (several pending).
    pub fn request_upgrade(&self) -> Option<oneshot::Receiver<UpgradeResult>> {
        let (reply, rx) = oneshot::channel();
        self.upgrade_tx
            .try_send(UpgradeRequest { reply: Some(reply) })
            .ok()
            .map(|()| rx)
    }

    /// Ask for a binary upgrade without waiting for its outcome (SIGUSR2).
    pub fn request_upgrade_detached(&self) {
        let _ = self.upgrade_tx.try_send(UpgradeRequest { reply: None });
    }

    /// The upgrade requests, for the one task that runs them (`None` once taken).
    pub fn take_upgrade_requests(&self) -> Option<mpsc::Receiver<UpgradeRequest>> {
        match self.upgrade_rx.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    /// Whether a task serves upgrade requests (the binary's `run` has one; tests that
    /// drive the proxy themselves usually do not).
    pub fn upgrades_served(&self) -> bool {
        match self.upgrade_rx.lock() {
            Ok(g) => g.is_none(),
            Err(p) => p.into_inner().is_none(),
        }
    }

    /// A new process took over the listeners: stop accepting, let every session go on
    /// (pre-auth ones may still log in here).
    pub fn begin_handover(&self) {
        self.accept_stop.cancel();
        self.tracker.close();
    }

    /// The upgrade grace is over: the shutdown that follows closes what is left at once
    /// (spread over the close window) instead of granting `shutdown_grace` again.
    pub fn mark_grace_served(&self) {
        self.grace_served.store(true, Ordering::Release);
    }

    /// The grace the shutdown sequence still grants: `configured`, or none when the
    /// upgrade grace was already served.
    pub fn remaining_grace(&self, configured: std::time::Duration) -> std::time::Duration {
        if self.grace_served.load(Ordering::Acquire) {
            std::time::Duration::ZERO
        } else {
            configured
        }
    }

    /// Begin shutdown: stop accepting, tell pre-auth sessions.
    pub(crate) fn begin_shutdown(&self) {
        self.accept_stop.cancel();
        self.shutdown.cancel();
        self.tracker.close();
    }

    /// End the grace: close spliced sessions.
    pub(crate) fn force(&self) {
        self.force.cancel();
    }

    /// Wait until every session ended.
    pub async fn all_ended(&self) {
        self.tracker.wait().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn handover_stops_accepting_without_shutting_down() {
        let l = Lifecycle::new();
        assert!(!l.is_handed_over());
        l.begin_handover();
        tokio::time::timeout(Duration::from_secs(1), l.accepting_stopped())
            .await
            .expect("accept loops are told to stop");
        assert!(
            !l.is_shutting_down(),
            "pre-auth sessions must not get a BYE"
        );
        assert!(l.is_handed_over());
        l.all_ended().await;
    }

    #[test]
    fn grace_served_only_after_the_upgrade_grace() {
        let l = Lifecycle::new();
        let g = Duration::from_secs(30);
        assert_eq!(l.remaining_grace(g), g);
        l.mark_grace_served();
        assert_eq!(l.remaining_grace(g), Duration::ZERO);
    }

    #[tokio::test]
    async fn upgrade_requests_reach_the_runner() {
        let l = Lifecycle::new();
        let mut rx = l.take_upgrade_requests().expect("first take");
        assert!(l.take_upgrade_requests().is_none());
        let reply = l.request_upgrade().expect("queued");
        let req = rx.recv().await.expect("request");
        let done = UpgradeDone {
            new_pid: 2,
            old_pid: 1,
        };
        req.reply.expect("reply").send(Ok(done)).expect("send");
        assert_eq!(reply.await.expect("outcome"), Ok(done));
        l.request_upgrade_detached();
        assert!(rx.recv().await.expect("detached").reply.is_none());
    }
}
