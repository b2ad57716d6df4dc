//! Reload requests, coalesced: one reload per edit, and never two reloads (two tables being
//! parsed) at once.
//!
//! - Triggers are served one at a time. Every trigger that arrives while a reload runs (or
//!   waits to start) joins the one queued reload: however many arrive, exactly one more
//!   reload runs after the current one, and every waiter gets its result.
//! - A file change is dropped when a reload that started after the watcher saw the change
//!   has run (it read the new bytes): an edit followed by `SIGHUP` is one reload, not two.
//! - `SIGHUP` and `POST /reload` are never dropped (they may be about files the watcher does
//!   not see: certificates, probe passwords, the admin token), only joined with the queued
//!   reload.
//!
//! A reload is stamped as started [`SETTLE`] after its first trigger: a write made right
//! before a `SIGHUP` reaches the watcher within microseconds (milliseconds on a loaded
//! machine), and its event is then known to be covered. The stamp is taken before any file
//! is read. A watcher slower than that costs one extra reload, never a missed one.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a reload waits after its first trigger before it starts (and is stamped).
pub const SETTLE: Duration = Duration::from_millis(50);

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// The routing file's or mailgate.yaml's directory changed.
    FileChange,
    /// `POST /reload`.
    Admin,
}

impl Trigger {
    /// Label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::FileChange => "file_change",
            Trigger::Admin => "admin",
        }
    }
}

/// The triggers one reload serves.
#[derive(Debug)]
pub struct Batch<W> {
    /// The first `SIGHUP` or admin trigger among them, else [`Trigger::FileChange`].
    pub trigger: Trigger,
    /// Those waiting for the result, each with its own trigger.
    pub waiters: Vec<(Trigger, W)>,
    /// How many triggers joined.
    pub requests: usize,
    explicit: bool,
    /// The latest instant a watcher saw a change among the file triggers.
    file_seen: Option<Instant>,
}

impl<W> Batch<W> {
    /// Only file changes, all seen before `started`: that reload read their bytes.
    fn covered_by(&self, started: Option<Instant>) -> bool {
        match (self.explicit, self.file_seen, started) {
            (false, Some(seen), Some(started)) => seen < started,
            _ => false,
        }
    }
}

#[derive(Debug)]
struct State<W> {
    queued: Option<Batch<W>>,
    /// When the last reload started.
    last_start: Option<Instant>,
    /// File changes dropped because a later-started reload covered them.
    dropped: u64,
    closed: bool,
}

/// The queue between the triggers and the one reloader.
#[derive(Debug)]
pub struct Queue<W> {
    state: Mutex<State<W>>,
    wake: Notify,
}

impl<W> Default for Queue<W> {
    fn default() -> Self {
        Queue {
            state: Mutex::new(State {
                queued: None,
                last_start: None,
                dropped: 0,
                closed: false,
            }),
            wake: Notify::new(),
        }
    }
}

impl<W> Queue<W> {
    fn lock(&self) -> MutexGuard<'_, State<W>> {
        // A panic while holding the lock left plain data behind: keep going with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask for a reload. `seen`: for a file change, when the watcher saw it (`None`: now).
    /// After [`Queue::close`] the waiter is dropped at once (its receiver sees the end).
    pub fn push(&self, trigger: Trigger, seen: Option<Instant>, waiter: Option<W>) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        let batch = s.queued.get_or_insert_with(|| Batch {
            trigger,
            waiters: Vec::new(),
            requests: 0,
            explicit: false,
            file_seen: None,
        });
        batch.requests += 1;
        if trigger == Trigger::FileChange {
            let seen = seen.unwrap_or_else(Instant::now);
            batch.file_seen = Some(batch.file_seen.map_or(seen, |s| s.max(seen)));
        } else if !batch.explicit {
            batch.explicit = true;
            batch.trigger = trigger;
        }
        if let Some(w) = waiter {
            batch.waiters.push((trigger, w));
        }
        drop(s);
        self.wake.notify_one();
    }

    /// The next reload to run: waits for a trigger, then [`SETTLE`], then takes every
    /// trigger queued by then and stamps the start. File changes a started reload covered
    /// are dropped here. Cancel-safe: nothing is taken before the last await.
    pub async fn next(&self) -> Batch<W> {
        loop {
            let notified = self.wake.notified();
            let queued = self.lock().queued.is_some();
            if !queued {
                notified.await;
                continue;
            }
            drop(notified);
            tokio::time::sleep(SETTLE).await;
            let mut s = self.lock();
            let Some(batch) = s.queued.take() else {
                continue;
            };
            if batch.covered_by(s.last_start) {
                s.dropped += batch.requests as u64;
                tracing::debug!(
                    triggers = batch.requests,
                    "file change already read by a reload that started after it; skipped"
                );
                continue;
            }
            s.last_start = Some(Instant::now());
            return batch;
        }
    }

    /// File changes dropped so far because a later-started reload had read them (the tests'
    /// view; the log has a debug line for each).
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// The reloader is gone: drop every waiter (they see the end) and refuse new ones.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.queued = None;
    }
}

#[cfg(test)]
#[path = "reload_queue_tests.rs"]
mod tests;
