//! The running proxy: assembles the handles every part uses (runtime snapshot, admission,
//! client limits, backend client, metrics, lifecycle, reloader), binds the listeners, and
//! runs the shutdown sequence: stop accepting → BYE to pre-auth sessions → grace for
//! spliced ones → close the rest, spread over `shutdown_close_window`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailgate_config::{Config, RoutingTable};
use mailgate_health::{CapabilityBook, HealthView, KickRegistry, ProbeScheduler};
use tokio::net::TcpListener;

use crate::admin::AdminContext;
use crate::admin::StateGauges;
use crate::admin::auth::TokenStore;
use crate::admission::Admission;
use crate::admission::LoginMetrics;
use crate::backend::BackendClient;
use crate::capabilities::CapabilityMetrics;
use crate::client_limits::ClientLimits;
use crate::endpoint::ListenerKind;
use crate::lifecycle::Lifecycle;
use crate::listener_set::ListenerSet;
use crate::logging::LogMetrics;
use crate::metrics::{MetricGroup, Metrics};
use crate::prober::NetProber;
use crate::prober::ProbeMetrics;
use crate::reload::ConfigMetrics;
use crate::reload::{self, ReloadHandle, ReloadInbox, Reloader};
use crate::runtime::{Runtime, RuntimeHandle};
use crate::session::SessionContext;
use crate::session::SessionMetrics;
use crate::tls::ServerTls;
use crate::{listener, topology};

/// The metric families, each owned by the module that updates it.
#[derive(Debug, Clone)]
struct Groups {
    sessions: Arc<SessionMetrics>,
    logins: Arc<LoginMetrics>,
    capabilities: Arc<CapabilityMetrics>,
    probes: Arc<ProbeMetrics>,
    config: Arc<ConfigMetrics>,
    gauges: Arc<StateGauges>,
    guard: Arc<crate::move_plan::guard::MoveGuard>,
}

impl Groups {
    fn new() -> Self {
        Groups {
            sessions: Arc::default(),
            logins: Arc::default(),
            capabilities: Arc::default(),
            probes: Arc::default(),
            config: Arc::default(),
            gauges: Arc::default(),
            guard: Arc::default(),
        }
    }

    /// Every family, registered in this one place.
    fn registry(&self) -> Metrics {
        let all: Vec<Arc<dyn MetricGroup>> = vec![
            self.gauges.clone(),
            self.logins.clone(),
            self.capabilities.clone(),
            self.probes.clone(),
            self.sessions.clone(),
            self.config.clone(),
            self.guard.clone(),
            Arc::new(LogMetrics),
        ];
        Metrics::build(all)
    }
}

/// The proxy's parts, before and while it serves.
#[derive(Debug)]
pub struct Proxy {
    config: Config,
    runtime: RuntimeHandle,
    sessions: Arc<SessionContext>,
    health: HealthView,
    capabilities: CapabilityBook,
    kicks: KickRegistry,
    metrics: Arc<Metrics>,
    groups: Groups,
    backends: Arc<BackendClient>,
    lifecycle: Arc<Lifecycle>,
    reload: ReloadHandle,
    inbox: Mutex<Option<ReloadInbox>>,
    tokens: Mutex<Option<Arc<TokenStore>>>,
    listener_set: Arc<ListenerSet>,
    drains: Arc<crate::state_file::DrainStore>,
}

impl Proxy {
    /// Build the proxy from a loaded configuration, routing table and certificates.
    pub fn new(config: Config, routing: RoutingTable, tls: Option<ServerTls>) -> Arc<Proxy> {
        let runtime = Runtime::new(&config, routing, tls);
        let groups = Groups::new();
        let metrics = Arc::new(groups.registry());
        let settings = topology::health_settings(&config.health);
        let kicks = KickRegistry::new(settings.kick_quiet, settings.kick_max_wait);
        let capabilities = CapabilityBook::default();
        let health = HealthView::new(settings);
        health.set_backends(topology::backend_specs(&runtime.routing));
        let drains = crate::state_file::DrainStore::open(config.admin.state_file.clone(), &health);
        groups.guard.set_mode(config.reload_guard);
        groups.config.record_reload(true);
        groups.config.set_routes(&runtime.routing);
        groups.logins.sync_backends(&runtime.routing);
        let runtime = RuntimeHandle::new(runtime);
        let backends = Arc::new(BackendClient::with_resolver(&config.resolver));
        let lifecycle = Arc::new(Lifecycle::new());
        let sessions = Arc::new(SessionContext::new(
            runtime.clone(),
            Admission::new(health.clone(), kicks.clone(), groups.logins.clone()),
            ClientLimits::new(&config.limits, fd_limit()),
            backends.clone(),
            groups.sessions.clone(),
            lifecycle.clone(),
        ));
        sessions.set_capabilities(capabilities.clone());
        let (reload, inbox) = reload::channel();
        let listener_set = Arc::new(ListenerSet::new(sessions.clone(), backends.clone()));
        Arc::new(Proxy {
            config,
            runtime,
            sessions,
            health,
            capabilities,
            kicks,
            metrics,
            groups,
            backends,
            lifecycle,
            reload,
            inbox: Mutex::new(Some(inbox)),
            tokens: Mutex::new(None),
            listener_set,
            drains,
        })
    }

    /// Health, drain and budgets of every backend.
    pub fn health(&self) -> &HealthView {
        &self.health
    }

    /// Spliced sessions, for kicks.
    pub fn kicks(&self) -> &KickRegistry {
        &self.kicks
    }

    /// The configuration snapshot in force.
    pub fn runtime(&self) -> &RuntimeHandle {
        &self.runtime
    }

    /// Ask for reloads (served once [`serve`] runs).
    pub fn reloader(&self) -> &ReloadHandle {
        &self.reload
    }

    /// Metric families.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Shutdown state.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// What sessions use (the accept loops hand it to each session).
    pub fn session_context(&self) -> Arc<SessionContext> {
        self.sessions.clone()
    }

    /// The client listeners in force (a reload adds and removes them).
    pub fn listener_set(&self) -> &Arc<ListenerSet> {
        &self.listener_set
    }

    /// The configuration the process started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The admin token store: the reloader re-reads its file with every reload.
    pub fn set_admin_tokens(&self, tokens: Arc<TokenStore>) {
        *lock(&self.tokens) = Some(tokens);
    }

    /// What the admin server uses.
    pub fn admin_context(&self) -> AdminContext {
        AdminContext {
            health: self.health.clone(),
            kicks: self.kicks.clone(),
            capabilities: self.capabilities.clone(),
            runtime: self.runtime.clone(),
            reload: self.reload.clone(),
            metrics: self.metrics.clone(),
            gauges: self.groups.gauges.clone(),
            lifecycle: self.lifecycle.clone(),
            token_configured: self.config.admin.token_file.is_some(),
            guard: self.groups.guard.clone(),
            drains: self.drains.clone(),
        }
    }

    fn start_probes(&self) -> Arc<ProbeScheduler> {
        let prober = Arc::new(NetProber::new(
            self.runtime.clone(),
            self.backends.clone(),
            self.groups.probes.clone(),
        ));
        prober.set_capabilities(self.capabilities.clone(), self.groups.capabilities.clone());
        Arc::new(ProbeScheduler::spawn(
            self.health.clone(),
            prober,
            topology::probe_targets(&self.runtime.snapshot().routing),
            self.lifecycle.force_token(),
        ))
    }
}

/// The process's open-file limit (the connection cap keeps below it).
fn fd_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
        .filter(|n| *n != rlimit::INFINITY)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Load the server certificates named in the config.
pub fn load_tls(t: &mailgate_config::TlsConfig) -> Result<ServerTls, crate::tls::TlsError> {
    ServerTls::from_config(t)
}

/// Bound public listeners.
#[derive(Debug, Default)]
pub struct Listeners {
    /// (kind, listener) pairs.
    pub public: Vec<(ListenerKind, TcpListener)>,
}

impl Listeners {
    /// Bind every listener the config names.
    pub fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let mut public = Vec::new();
        for kind in ListenerKind::ALL {
            let addr: Option<SocketAddr> = match kind {
                ListenerKind::Imap => config.listen.imap,
                ListenerKind::Imaps => config.listen.imaps,
                ListenerKind::Pop3 => config.listen.pop3,
                ListenerKind::Pop3s => config.listen.pop3s,
            };
            if let Some(addr) = addr {
                if kind.implicit_tls() && config.tls.is_none() {
                    anyhow::bail!(
                        "listen.{}: needs a tls: section (cert and key)",
                        kind.name()
                    );
                }
                let l = listener::bind(addr).map_err(|e| {
                    anyhow::anyhow!("listen.{}: cannot bind {addr}: {e}", kind.name())
                })?;
                public.push((kind, l));
            }
        }
        Ok(Listeners { public })
    }
}

/// Serve until `shutdown` resolves, then run the shutdown sequence.
pub async fn serve(
    proxy: Arc<Proxy>,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // The loop guard: the backend client never dials these (backend/own.rs).
    let own = listeners
        .public
        .iter()
        .filter_map(|(kind, l)| Some((kind.name(), l.local_addr().ok()?)))
        .collect();
    proxy.backends.set_own_listeners(own);
    proxy
        .backends
        .warn_own_listener_loops(&proxy.runtime.snapshot().routing);
    // The listener set accepts on them; a reload adds and removes listeners there.
    for (kind, l) in listeners.public {
        let Ok(local) = l.local_addr() else { continue };
        let configured = crate::listener_set::configured(&proxy.config.listen, kind);
        proxy
            .listener_set
            .start(kind, configured.unwrap_or(local), l);
    }
    let probes = proxy.start_probes();
    if let Some(inbox) = lock(&proxy.inbox).take() {
        let reloader = Reloader {
            config: proxy.config.clone(),
            // The file the config was loaded from; a config built in memory (tests) has
            // none on disk, and its reloads re-read only the routing file and certificates.
            config_path: Some(proxy.config.source.clone()).filter(|p| p.is_file()),
            runtime: proxy.runtime.clone(),
            health: proxy.health.clone(),
            kicks: proxy.kicks.clone(),
            probes: Some(probes.clone()),
            metrics: proxy.groups.config.clone(),
            logins: proxy.groups.logins.clone(),
            tokens: lock(&proxy.tokens).clone(),
            backends: Some(proxy.backends.clone()),
            guard: proxy.groups.guard.clone(),
            sessions: Some(proxy.sessions.clone()),
            listeners: Some(proxy.listener_set.clone()),
        };
        tokio::spawn(reloader.run(inbox, proxy.lifecycle.force_token()));
    }
    let sessions = proxy.sessions.clone();
    let stop = proxy.lifecycle.force_token();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tick.tick() => sessions.clients().prune(),
                _ = stop.cancelled() => break,
            }
        }
    });
    shutdown.await;
    let lifecycle = &proxy.lifecycle;
    // None left when a binary upgrade's drain already served upgrade_grace.
    let grace = lifecycle.remaining_grace(proxy.runtime.snapshot().shutdown_grace);
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        active = lifecycle.sessions(),
        "shutdown: no new connections; pre-auth sessions told BYE"
    );
    lifecycle.begin_shutdown();
    if tokio::time::timeout(grace, lifecycle.all_ended())
        .await
        .is_err()
    {
        tracing::warn!(
            cut_off = lifecycle.sessions(),
            "shutdown grace over; closing spliced sessions"
        );
        lifecycle.force();
        // Sessions close spread over the close window, each at a quiet moment.
        let window = proxy.runtime.snapshot().shutdown_close_window;
        let _ = tokio::time::timeout(window + Duration::from_secs(5), lifecycle.all_ended()).await;
    }
    lifecycle.force();
    tracing::info!("shutdown complete");
}
