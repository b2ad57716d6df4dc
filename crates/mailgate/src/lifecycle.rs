//! The process's phases as sessions see them: serving, shutting down (stop accepting, BYE
//! to pre-auth sessions), forced (the grace is over: close spliced sessions), and the
//! tracker that shutdown waits on. Also hands out session ids.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shutdown signals and the session tracker.
#[derive(Debug)]
pub struct Lifecycle {
    shutdown: CancellationToken,
    force: CancellationToken,
    tracker: TaskTracker,
    session_ids: AtomicU64,
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
        Lifecycle {
            shutdown: CancellationToken::new(),
            force: CancellationToken::new(),
            tracker: TaskTracker::new(),
            session_ids: AtomicU64::new(seed),
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

    /// Begin shutdown: stop accepting, tell pre-auth sessions.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.cancel();
        self.tracker.close();
    }

    /// End the grace: close spliced sessions.
    pub(crate) fn force(&self) {
        self.force.cancel();
    }

    /// Wait until every session ended.
    pub(crate) async fn all_ended(&self) {
        self.tracker.wait().await
    }
}
