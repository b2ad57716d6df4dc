//! The one reloader. Every trigger — SIGHUP, a change of the routing file or of
//! mailgate.yaml, `POST /reload` — is a request to one task, which runs them one at a time,
//! coalesced (`reload_queue.rs`: the triggers that arrive during a reload make one more
//! reload; a file change that a later-started reload already read makes none). A reload
//! runs in this order:
//!
//! read and validate everything (mailgate.yaml, refusing keys only a restart applies; the
//! certificates; the routing file — on the reload thread, `reload_lane.rs`; see
//! `reload_check.rs`) → prepare the log filter and bind added listeners → diff the routing
//! table against the one it replaces → store the new runtime snapshot → health settings, targets and probes →
//! client limits, log level and format, listeners added and removed → re-read the admin
//! token → kick the sessions whose route moved → metrics → one log line.
//!
//! A bad file, a certificate, a listener that cannot be bound or a restart-only change
//! changes nothing, and the error names the file, line and key. Because the task is alone
//! in changing the snapshot, two reloads can never interleave: the certificates and the
//! table of a snapshot always belong together, and kicks are computed against the table
//! that was actually replaced.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mailgate_config::Config;
use mailgate_health::{HealthView, KickReason, KickRegistry, ProbeScheduler};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::admin::auth::TokenStore;
use crate::admission::LoginMetrics;
use crate::backend::BackendClient;
use crate::listener_set::ListenerSet;
pub use crate::reload_check::ReloadError;
use crate::reload_check::{self, Candidate};
use crate::reload_lane::Lane;
pub use crate::reload_metrics::ConfigMetrics;
use crate::reload_queue::Queue;
use crate::runtime::RuntimeHandle;
use crate::session::SessionContext;
use crate::topology;

pub use crate::reload_queue::Trigger;

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// What asked for it.
    pub trigger: Trigger,
    /// Version of the routing table now in force (hex).
    pub routing_version: String,
    /// The routing file was unchanged (certificates and token were still re-read).
    pub unchanged: bool,
    /// One-line summary of the routing diff.
    pub summary: String,
    /// Spliced sessions asked to move because their route changed.
    pub sessions_to_move: usize,
    /// The admin token file was re-read (`false`: unreadable, the old token kept).
    pub token_reloaded: bool,
    /// The keys of mailgate.yaml that changed and are now in force.
    pub config_changes: Vec<&'static str>,
    /// Listeners added and removed, one line each.
    pub listener_changes: Vec<String>,
    /// Backends the moved sessions would push over `max_sessions` (`reload_guard: warn`).
    pub over_budget: Vec<String>,
}

/// What a reload would do now (`POST /reload?dry_run=true`); nothing was changed.
#[derive(Debug, Clone)]
pub struct ReloadPreview {
    /// The keys of mailgate.yaml a reload would apply.
    pub config_changes: Vec<&'static str>,
    /// The restart-only changes (file, line, key, old and new value, why), each of which
    /// would refuse the reload.
    pub needs_restart: Vec<String>,
    /// Listeners a reload would add and remove.
    pub listener_changes: Vec<String>,
    /// One-line summary of the routing diff.
    pub routing_summary: String,
}

type ReloadTx = oneshot::Sender<Result<ReloadReport, ReloadError>>;
type PreviewTx = oneshot::Sender<Result<ReloadPreview, ReloadError>>;

/// Asks the reloader for a reload; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    queue: Arc<Queue<ReloadTx>>,
    previews: mpsc::Sender<PreviewTx>,
}

impl ReloadHandle {
    /// Reload and wait for the report. A reload already queued is joined (its result is
    /// this one's): it starts after this request, so it reads the files as they are now.
    pub async fn reload(&self, trigger: Trigger) -> Result<ReloadReport, ReloadError> {
        let (reply, rx) = oneshot::channel();
        self.queue.push(trigger, None, Some(reply));
        rx.await.map_err(|_| ReloadError::Stopped)?
    }

    /// What a reload would do now, changing nothing (validated like a reload, but
    /// restart-only changes are listed instead of refusing).
    pub async fn preview(&self, _trigger: Trigger) -> Result<ReloadPreview, ReloadError> {
        let (reply, rx) = oneshot::channel();
        self.previews
            .send(reply)
            .await
            .map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)?
    }

    /// Ask for a reload without waiting; it joins the queued reload if there is one.
    pub fn request(&self, trigger: Trigger) {
        self.queue.push(trigger, None, None);
    }

    /// The watcher saw a change at `seen`: a reload unless one that started after `seen`
    /// has run (or is queued to run) by the time this is served.
    pub fn file_changed(&self, seen: std::time::Instant) {
        let seen = tokio::time::Instant::from_std(seen);
        self.queue.push(Trigger::FileChange, Some(seen), None);
    }
}

/// The requests waiting for the reloader task.
#[derive(Debug)]
pub struct ReloadInbox {
    queue: Arc<Queue<ReloadTx>>,
    previews: mpsc::Receiver<PreviewTx>,
}

/// A handle and the inbox it sends to.
pub fn channel() -> (ReloadHandle, ReloadInbox) {
    let queue = Arc::new(Queue::default());
    let (tx, rx) = mpsc::channel(8);
    (
        ReloadHandle {
            queue: queue.clone(),
            previews: tx,
        },
        ReloadInbox {
            queue,
            previews: rx,
        },
    )
}

/// Closes the queue when the reloader ends, however it ends: waiters see `Stopped`.
struct CloseOnDrop(Arc<Queue<ReloadTx>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Sends one reload's result to everyone who waits for it.
fn answer(waiters: Vec<(Trigger, ReloadTx)>, result: Result<ReloadReport, ReloadError>) {
    if waiters.len() <= 1 {
        if let Some((_, tx)) = waiters.into_iter().next() {
            let _ = tx.send(result);
        }
        return;
    }
    match result {
        Ok(report) => {
            for (trigger, tx) in waiters {
                let _ = tx.send(Ok(ReloadReport {
                    trigger,
                    ..report.clone()
                }));
            }
        }
        Err(e) => {
            let shared = Arc::new(e);
            for (_, tx) in waiters {
                let _ = tx.send(Err(ReloadError::Coalesced(shared.clone())));
            }
        }
    }
}

/// Everything a reload changes.
#[derive(Debug)]
pub struct Reloader {
    /// The mailgate.yaml in force (its routing file, certificates and settings).
    pub config: Config,
    /// Re-read with every reload; `None`: only the routing file, the certificates and the
    /// token are re-read (the settings of `config` stay).
    pub config_path: Option<PathBuf>,
    /// The snapshot to replace.
    pub runtime: RuntimeHandle,
    /// Budgets, health settings and targets.
    pub health: HealthView,
    /// Sessions to kick when routes move.
    pub kicks: KickRegistry,
    /// Probe targets.
    pub probes: Option<Arc<ProbeScheduler>>,
    /// Reload metrics.
    pub metrics: Arc<ConfigMetrics>,
    /// Per-backend login series, rebuilt for each table.
    pub logins: Arc<LoginMetrics>,
    /// The admin token, re-read with every reload.
    pub tokens: Option<Arc<TokenStore>>,
    /// Told every new table: it logs backends that are mailgate's own listeners.
    pub backends: Option<Arc<BackendClient>>,
    /// The client limits (`limits:`) sessions count against.
    pub sessions: Option<Arc<SessionContext>>,
    /// The client listeners (`listen.imap` etc.).
    pub listeners: Option<Arc<ListenerSet>>,
    /// The move planner's budget check (`reload_guard`).
    pub guard: Arc<crate::move_plan::guard::MoveGuard>,
}

impl Reloader {
    /// Serve requests one at a time until `stop`: reloads as [`Queue`] coalesces them,
    /// dry runs in between.
    pub async fn run(mut self, inbox: ReloadInbox, stop: CancellationToken) {
        let ReloadInbox {
            queue,
            mut previews,
        } = inbox;
        let _close = CloseOnDrop(queue.clone());
        let lane = Lane::start();
        loop {
            let batch = tokio::select! {
                b = queue.next() => b,
                p = previews.recv() => {
                    if let Some(tx) = p {
                        let _ = tx.send(self.preview(&lane).await);
                    }
                    continue;
                }
                _ = stop.cancelled() => return,
            };
            let result = self.reload_once(&lane, batch.trigger, batch.requests).await;
            if let Err(e) = &result {
                self.metrics.record_refused(e);
                tracing::error!(
                    trigger = batch.trigger.as_str(),
                    reason = e.reason(),
                    error = %e,
                    "reload refused; nothing changed"
                );
            }
            answer(batch.waiters, result);
        }
    }

    async fn preview(&self, lane: &Lane) -> Result<ReloadPreview, ReloadError> {
        let path = self.config_path.clone();
        let current = self.config.clone();
        let running = self.runtime.snapshot().routing.clone();
        // Parsing, the routing diff and freeing the candidate table: all blocking work, on
        // the reload thread.
        let (config, config_diff, restart, routing_summary) = lane
            .run(move || {
                reload_check::preview(path.as_deref(), &current).map(|(candidate, restart)| {
                    let summary = running.diff(&candidate.table).summary();
                    (candidate.config, candidate.diff, restart, summary)
                })
            })
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))??;
        if let Some(h) = crate::logging::reload_handle() {
            h.prepare(&config.log)?;
        }
        let listener_changes = self
            .listeners
            .as_ref()
            .map(|l| l.preview(&config.listen))
            .unwrap_or_default();
        Ok(ReloadPreview {
            config_changes: config_diff.reloadable().collect(),
            needs_restart: restart.iter().map(|d| d.to_string()).collect(),
            listener_changes,
            routing_summary,
        })
    }

    async fn reload_once(
        &mut self,
        lane: &Lane,
        trigger: Trigger,
        coalesced: usize,
    ) -> Result<ReloadReport, ReloadError> {
        let path = self.config_path.clone();
        let current = self.config.clone();
        let candidate = lane
            .run(move || reload_check::candidate(path.as_deref(), &current))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))??;
        let Candidate {
            config,
            diff: config_diff,
            table,
            tls,
        } = candidate;
        // Everything that can still fail, before anything is swapped.
        let log = match crate::logging::reload_handle() {
            Some(h) => Some(h.prepare(&config.log)?),
            None => None,
        };
        let listener_plan = match &self.listeners {
            Some(l) => Some(l.prepare(&config.listen)?),
            None => None,
        };

        let old = self.runtime.snapshot();
        // The diff walks every domain, and an unchanged candidate is a whole table to free:
        // both off the runtime's workers, on the reload thread (`reload_lane.rs`).
        let running = old.routing.clone();
        let (new_table, unchanged, diff) = lane
            .run(move || {
                if table.version() == running.version() {
                    drop(table);
                    (running, true, mailgate_config::RoutingDiff::default())
                } else {
                    let new_table = Arc::new(table);
                    let diff = running.diff(&new_table);
                    (new_table, false, diff)
                }
            })
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))?;
        // Moves that would push a backend over max_sessions: flagged; strict refuses here.
        let over_budget =
            self.guard
                .check(config.reload_guard, &old.routing, &new_table, &self.kicks)?;
        self.runtime
            .store(old.reloaded(&config, new_table.clone(), tls));
        if let Some(b) = &self.backends {
            b.warn_own_listener_loops(&new_table);
        }
        let settings = topology::health_settings(&config.health);
        if settings != self.health.settings() {
            // Health state, drains and counters are kept; probes follow the new timing.
            self.health.set_settings(settings);
            if let Some(p) = &self.probes {
                p.settings_changed();
            }
        }
        self.health
            .set_backends(topology::backend_specs(&new_table));
        if let Some(p) = &self.probes {
            p.set_targets(topology::probe_targets(&new_table));
        }
        if let Some(s) = &self.sessions {
            s.clients().apply(&config.limits);
        }
        if let Some(log) = log {
            // Validated above; a swap error means the subscriber is gone: say so, go on.
            if let Err(e) = log.install() {
                tracing::error!(error = %e, "log settings not applied");
            }
        }
        let listener_changes = match (&self.listeners, listener_plan) {
            (Some(l), Some(plan)) => l.apply(plan),
            _ => Vec::new(),
        };
        let token_reloaded = self.tokens.as_ref().is_none_or(|t| t.reload().is_ok());
        let mut sessions_to_move = 0;
        if !diff.is_empty() {
            let window = self.health.settings().kick_window;
            sessions_to_move = self.kicks.kick_where(
                |info| old.routing.route_changed(&new_table, &info.user),
                window,
                KickReason::RouteChanged,
            );
        }
        if !unchanged {
            self.logins.sync_backends(&new_table);
        }
        self.metrics.record_reload(true);
        self.metrics.set_routes(&new_table);
        let summary = diff.summary();
        let config_changes: Vec<&'static str> = config_diff.reloadable().collect();
        tracing::info!(
            trigger = trigger.as_str(),
            summary = %summary,
            config = %config_diff.summary(),
            listeners = %listener_changes.join(", "),
            sessions_to_move,
            triggers = coalesced,
            "configuration reloaded"
        );
        self.config = config;
        // The snapshot this reload replaced; if it held the last reference to the old
        // table, freeing that is the reload thread's work too, done before the next reload
        // starts (so no reload parses while an older table is still being freed).
        let _ = lane.run(move || drop(old)).await;
        Ok(ReloadReport {
            trigger,
            routing_version: new_table.version_hex(),
            unchanged,
            summary,
            sessions_to_move,
            token_reloaded,
            config_changes,
            listener_changes,
            over_budget,
        })
    }
}

/// SIGHUP and changes of `files` (the routing file and mailgate.yaml, each watched through
/// its directory) ask `handle` for reloads. The returned watchers must be kept alive.
pub fn spawn_triggers(
    handle: &ReloadHandle,
    files: &[&Path],
    sighup: bool,
) -> Vec<mailgate_config::Watcher> {
    let hup = handle.clone();
    // Registered now, before the listeners accept anything: a SIGHUP that arrived before
    // the handler exists would end the process (its default action).
    let signal =
        sighup.then(|| tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()));
    match signal {
        None => {}
        Some(Ok(mut sig)) => {
            tokio::spawn(async move {
                while sig.recv().await.is_some() {
                    hup.request(Trigger::Signal);
                }
            });
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; reload via the admin API")
        }
    }
    let mut watchers = Vec::new();
    for path in files {
        let file = handle.clone();
        match mailgate_config::watch(path, move |seen| file.file_changed(seen)) {
            Ok(w) => watchers.push(w),
            Err(e) => {
                tracing::warn!(error = %e, file = %path.display(), "cannot watch; reload with SIGHUP");
            }
        }
    }
    watchers
}
