//! The one reloader. Every trigger — SIGHUP, a change of the routing file, `POST /reload`,
//! and with each of them the admin token file — is a request to one task, which runs
//! them one at a time, in this order:
//!
//! parse and validate (routing file, certificates; on the blocking pool) → diff against the
//! table it replaces → store the new runtime snapshot → update the health targets and the
//! probes → kick the sessions whose route moved → metrics → one log line.
//!
//! A bad routing file or certificate changes nothing, and the error names the file, line
//! and key. Because the task is alone in changing the snapshot, two reloads can never
//! interleave: the certificates and the table of a snapshot always belong together, and
//! kicks are computed against the table that was actually replaced.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use mailgate_config::{ConfigErrors, RoutingTable, TlsConfig};
use mailgate_health::{HealthView, KickReason, KickRegistry, ProbeScheduler};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::admin::auth::TokenStore;
use crate::admission::LoginMetrics;
use crate::backend::BackendClient;
use crate::metrics::{KindLabel, MetricGroup, ReloadLabel, ReloadResult, names};
use crate::runtime::RuntimeHandle;
use crate::tls::{ServerTls, TlsError};
use crate::topology;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// The routing file's directory changed.
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

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The routing file does not parse or validate (every error with file, line, key).
    #[error("{0}")]
    Routing(#[from] ConfigErrors),
    /// A certificate or key cannot be used.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// The blocking parse task died.
    #[error("reload task failed: {0}")]
    Task(String),
    /// The reloader is not running (shutdown).
    #[error("the reloader has stopped")]
    Stopped,
}

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
}

struct Request {
    trigger: Trigger,
    reply: Option<oneshot::Sender<Result<ReloadReport, ReloadError>>>,
}

/// Asks the reloader for a reload; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    tx: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("trigger", &self.trigger)
            .finish()
    }
}

impl ReloadHandle {
    /// Reload and wait for the report.
    pub async fn reload(&self, trigger: Trigger) -> Result<ReloadReport, ReloadError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                trigger,
                reply: Some(reply),
            })
            .await
            .map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)?
    }

    /// Ask for a reload without waiting. While requests are queued, more are dropped:
    /// the queued reload will read the files as they are then.
    pub fn request(&self, trigger: Trigger) {
        let _ = self.tx.try_send(Request {
            trigger,
            reply: None,
        });
    }
}

/// The requests waiting for the reloader task.
#[derive(Debug)]
pub struct ReloadInbox {
    rx: mpsc::Receiver<Request>,
}

/// A handle and the inbox it sends to.
pub fn channel() -> (ReloadHandle, ReloadInbox) {
    let (tx, rx) = mpsc::channel(8);
    (ReloadHandle { tx }, ReloadInbox { rx })
}

/// Everything a reload changes.
#[derive(Debug)]
pub struct Reloader {
    /// The routing file.
    pub routing_file: PathBuf,
    /// The certificates to re-read.
    pub tls: Option<TlsConfig>,
    /// The snapshot to replace.
    pub runtime: RuntimeHandle,
    /// Budgets and health targets.
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
}

impl Reloader {
    /// Serve requests one at a time until `stop`.
    pub async fn run(self, mut inbox: ReloadInbox, stop: CancellationToken) {
        loop {
            let request = tokio::select! {
                r = inbox.rx.recv() => match r {
                    Some(r) => r,
                    None => return,
                },
                _ = stop.cancelled() => return,
            };
            let result = self.reload_once(request.trigger).await;
            if let Some(reply) = request.reply {
                let _ = reply.send(result);
            }
        }
    }

    async fn reload_once(&self, trigger: Trigger) -> Result<ReloadReport, ReloadError> {
        let token_reloaded = self.tokens.as_ref().is_none_or(|t| t.reload().is_ok());
        let path = self.routing_file.clone();
        let tls = self.tls.clone();
        let parsed = tokio::task::spawn_blocking(move || parse(&path, tls.as_ref()))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))
            .and_then(|r| r);
        let (table, tls) = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.metrics.record_reload(false);
                tracing::error!(trigger = trigger.as_str(), error = %e, "reload failed; keeping the previous configuration");
                return Err(e);
            }
        };
        let old = self.runtime.snapshot();
        let unchanged = table.version() == old.routing.version();
        let new_table = if unchanged {
            old.routing.clone()
        } else {
            Arc::new(table)
        };
        let diff = old.routing.diff(&new_table);
        self.runtime.store(old.with_files(new_table.clone(), tls));
        if let Some(b) = &self.backends {
            b.warn_own_listener_loops(&new_table);
        }
        self.health
            .set_backends(topology::backend_specs(&new_table));
        if let Some(p) = &self.probes {
            p.set_targets(topology::probe_targets(&new_table));
        }
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
        tracing::info!(trigger = trigger.as_str(), summary = %summary, sessions_to_move, "configuration reloaded");
        Ok(ReloadReport {
            trigger,
            routing_version: new_table.version_hex(),
            unchanged,
            summary,
            sessions_to_move,
            token_reloaded,
        })
    }
}

/// `config_reloads_total`, `config_last_reload_success_timestamp_seconds`, `routes`.
#[derive(Debug, Default)]
pub struct ConfigMetrics {
    reloads: Family<ReloadLabel, Counter>,
    last_success: Gauge<f64, AtomicU64>,
    routes: Family<KindLabel, Gauge>,
}

impl ConfigMetrics {
    /// Count a reload (the load at start counts as one); on success stamp the time.
    pub fn record_reload(&self, ok: bool) {
        let result = if ok {
            ReloadResult::Success
        } else {
            ReloadResult::Failure
        };
        self.reloads.get_or_create(&ReloadLabel { result }).inc();
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.last_success.set(now);
        }
    }

    /// Mirror the routing table's size.
    pub fn set_routes(&self, table: &RoutingTable) {
        let c = table.counts();
        for (kind, n) in [
            ("domain", c.domains),
            ("wildcard", c.wildcards),
            ("user", c.users),
            ("default", c.default),
        ] {
            self.routes.get_or_create(&KindLabel { kind }).set(n as i64);
        }
    }
}

impl MetricGroup for ConfigMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            names::CONFIG_RELOADS,
            "Routing/certificate reloads by result",
            self.reloads.clone(),
        );
        r.register(
            names::CONFIG_LAST_RELOAD_SUCCESS,
            "Unix time of the last successful load",
            self.last_success.clone(),
        );
        r.register(
            names::ROUTES,
            "Routing table entries by kind",
            self.routes.clone(),
        );
    }
}

/// Parse and validate the routing file and certificates (blocking).
fn parse(
    routing_file: &Path,
    tls: Option<&TlsConfig>,
) -> Result<(RoutingTable, Option<ServerTls>), ReloadError> {
    // Certificates first: a bad certificate must not leave a new routing table
    // half-applied, and a bad routing file leaves the certificates unchanged too.
    let tls = tls.map(ServerTls::from_config).transpose()?;
    let loaded = RoutingTable::load(routing_file)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok((loaded.table, tls))
}

/// SIGHUP and changes of the routing file's directory ask `handle` for reloads. The
/// returned watcher must be kept alive.
pub fn spawn_triggers(
    handle: &ReloadHandle,
    routing_file: &Path,
) -> Option<mailgate_config::Watcher> {
    let hup = handle.clone();
    // Registered now, before the listeners accept anything: a SIGHUP that arrived before
    // the handler exists would end the process (its default action).
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut sig) => {
            tokio::spawn(async move {
                while sig.recv().await.is_some() {
                    hup.request(Trigger::Signal);
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP; reload via the admin API"),
    }
    let file = handle.clone();
    match mailgate_config::watch(routing_file, move || file.request(Trigger::FileChange)) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the routing file; reload with SIGHUP");
            None
        }
    }
}
