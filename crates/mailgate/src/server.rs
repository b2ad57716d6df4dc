//! The running proxy: shared state, listeners, reload, and the shutdown sequence
//! (stop accepting → BYE to pre-auth sessions → grace for spliced ones → force close).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use mailgate_health::{
    BackendSpec, BackendTarget, HealthSettings, HealthView, KickReason, KickRegistry,
    ProbeScheduler,
};
use mailgate_proto::{FrontConfig, Limits, Protocol};
use mailgate_config::{Config, HealthConfig, Routing, RoutingTable};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::backend::BackendClient;
use crate::client_limits::{AuthFailures, PerIp};
use crate::listener::{self, ListenerKind};
use crate::metrics::Metrics;
use crate::prober::NetProber;
use crate::tls::{CertSpec, ServerTls};

/// Timeouts and limits in force (from `limits:` in mailgate.yaml).
#[derive(Debug, Clone)]
pub struct RuntimeLimits {
    /// Pre-auth deadline.
    pub preauth_timeout: Duration,
    /// TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Backend connect.
    pub backend_connect_timeout: Duration,
    /// Backend greeting.
    pub backend_greeting_timeout: Duration,
    /// Backend login verdict.
    pub backend_login_timeout: Duration,
    /// Spliced idle limit.
    pub idle_timeout: Duration,
    /// Delay before answering an unknown domain (like a wrong password).
    pub auth_failure_delay: Duration,
    /// Concurrent sessions per client IP (0 = unlimited).
    pub max_sessions_per_ip: u32,
}

/// State shared by every session and background task.
#[derive(Debug)]
pub struct Shared {
    /// The configuration the process started with.
    pub config: Config,
    /// The routing table (atomically swapped on reload).
    pub routing: Arc<Routing>,
    tls: ArcSwapOption<ServerTls>,
    /// The client towards backends (shared by sessions and the prober).
    pub backends: Arc<BackendClient>,
    /// Health, budgets, drain, kicks.
    pub admission: Admission,
    /// Metric families.
    pub metrics: Arc<Metrics>,
    /// The probe scheduler, once started.
    scheduler: Mutex<Option<ProbeScheduler>>,
    /// Per-IP session counts.
    pub per_ip: PerIp,
    /// Per-IP failed logins (back-off).
    pub auth_failures: AuthFailures,
    /// Cancelled when shutdown starts: stop accepting, BYE to pre-auth sessions.
    pub shutdown: CancellationToken,
    /// Cancelled when the grace period ends: close spliced sessions.
    pub force: CancellationToken,
    /// Every session task.
    pub tracker: TaskTracker,
    limits: RuntimeLimits,
    proto_limits: Limits,
    session_ids: AtomicU64,
}

impl Shared {
    /// Build the shared state from a loaded configuration.
    pub fn new(config: Config, routing: Arc<Routing>, tls: Option<ServerTls>) -> Arc<Shared> {
        let l = &config.limits;
        let limits = RuntimeLimits {
            preauth_timeout: l.preauth_timeout,
            tls_handshake_timeout: l.tls_handshake_timeout,
            backend_connect_timeout: l.backend_connect_timeout,
            backend_greeting_timeout: l.backend_greeting_timeout,
            backend_login_timeout: l.backend_login_timeout,
            idle_timeout: l.idle_timeout,
            auth_failure_delay: l.auth_failure_delay,
            max_sessions_per_ip: l.max_sessions_per_ip,
        };
        let proto_limits = Limits {
            max_line: l.max_line,
            max_literal: l.max_literal,
            max_bad_commands: l.max_bad_commands,
            ..Limits::default()
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() << 20)
            .unwrap_or(0);
        let metrics = Arc::new(Metrics::new());
        let settings = health_settings(&config.health);
        let kicks = KickRegistry::new(settings.kick_quiet, settings.kick_max_wait);
        let health = HealthView::new(settings);
        health.set_backends(backend_specs(&routing.current()));
        metrics.record_reload(true);
        Arc::new(Shared {
            per_ip: PerIp::new(limits.max_sessions_per_ip),
            auth_failures: AuthFailures::new(
                l.max_auth_failures_per_ip,
                l.auth_failure_window,
                l.auth_failure_delay,
            ),
            config,
            routing,
            tls: ArcSwapOption::new(tls.map(Arc::new)),
            backends: Arc::new(BackendClient::new()),
            admission: Admission::new(health, kicks, metrics.clone()),
            metrics,
            scheduler: Mutex::new(None),
            shutdown: CancellationToken::new(),
            force: CancellationToken::new(),
            tracker: TaskTracker::new(),
            limits,
            proto_limits,
            session_ids: AtomicU64::new(seed),
        })
    }

    /// Start the active health checks (needs a tokio runtime).
    pub fn start_probes(self: &Arc<Self>) {
        let prober = Arc::new(NetProber::new(
            self.routing.clone(),
            self.backends.clone(),
            self.metrics.clone(),
            self.config.health.timeout,
        ));
        let scheduler = ProbeScheduler::spawn(
            self.admission.health.clone(),
            prober,
            probe_targets(&self.routing.current()),
            self.force.child_token(),
        );
        *lock(&self.scheduler) = Some(scheduler);
    }

    /// A new session id.
    pub fn next_session_id(&self) -> u64 {
        self.session_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Timeouts and limits.
    pub fn limits(&self) -> &RuntimeLimits {
        &self.limits
    }

    /// Protocol engine limits.
    pub fn proto_limits(&self) -> Limits {
        self.proto_limits.clone()
    }

    /// The server certificates in force.
    pub fn server_tls(&self) -> Option<Arc<ServerTls>> {
        self.tls.load_full()
    }

    /// Greeting/capability settings for a listener.
    pub fn front_config(&self, kind: ListenerKind, tls_configured: bool) -> FrontConfig {
        FrontConfig {
            limits: self.proto_limits(),
            tls_available: tls_configured && !kind.implicit_tls(),
            require_tls_for_login: self
                .config
                .tls
                .as_ref()
                .map(|t| t.require_tls_for_login)
                .unwrap_or(false),
            greeting_text: self
                .config
                .greeting
                .clone()
                .unwrap_or_else(|| "mailgate ready.".into()),
            oauth: self.config.oauth,
        }
    }

    /// Reload the routing file and the certificates. A bad file or certificate changes
    /// nothing and the error says why.
    pub async fn reload(self: &Arc<Self>, trigger: &'static str) -> Result<(), String> {
        let me = self.clone();
        let old = self.routing.current();
        let result = tokio::task::spawn_blocking(move || {
            // Certificates first: a bad certificate must not leave a new routing table
            // half-applied. A bad routing file leaves the certificates unchanged too.
            let tls = match &me.config.tls {
                Some(t) => Some(load_tls(t).map_err(|e| format!("tls: {e}"))?),
                None => None,
            };
            let report = me.routing.reload().map_err(|e| e.to_string())?;
            Ok::<_, String>((report, tls))
        })
        .await
        .map_err(|e| format!("reload task failed: {e}"))?;
        match result {
            Ok((report, tls)) => {
                if let Some(tls) = tls {
                    self.tls.store(Some(Arc::new(tls)));
                }
                let new = self.routing.current();
                self.admission.health.set_backends(backend_specs(&new));
                if let Some(s) = lock(&self.scheduler).as_ref() {
                    s.set_targets(probe_targets(&new));
                }
                let mut kicked = 0;
                if !report.diff.is_empty() {
                    let window = self.admission.health.settings().kick_window;
                    kicked = self.admission.kicks.kick_where(
                        |info| old.route_changed(&new, &info.user),
                        window,
                        KickReason::RouteChanged,
                    );
                }
                self.metrics.record_reload(true);
                self.metrics.set_routes(&new);
                tracing::info!(trigger, summary = %report.diff.summary(), sessions_to_move = kicked, "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.record_reload(false);
                tracing::error!(trigger, error = %e, "reload failed; keeping the previous configuration");
                Err(e)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Map `health:` of mailgate.yaml onto the health model's settings.
pub fn health_settings(h: &HealthConfig) -> HealthSettings {
    HealthSettings {
        interval: h.interval,
        timeout: h.timeout,
        fall: h.fall,
        rise: h.rise,
        degraded_latency: h.degraded_latency,
        max_auto_down_share: h.max_auto_down_share,
        slow_start: h.slow_start,
        kick_window: h.kick_window,
        ..HealthSettings::default()
    }
}

/// Budgets of every backend in a routing table.
pub fn backend_specs(table: &RoutingTable) -> Vec<BackendSpec> {
    table
        .backends()
        .map(|b| BackendSpec {
            name: b.name.clone(),
            max_sessions: b.max_sessions,
            max_logins_in_flight: b.max_logins_in_flight,
        })
        .collect()
}

/// One probe target per backend and protocol it serves.
pub fn probe_targets(table: &RoutingTable) -> Vec<BackendTarget> {
    let mut out = Vec::new();
    for b in table.backends() {
        if b.imap_port.is_some() {
            out.push(BackendTarget::new(b.name.clone(), Protocol::Imap));
        }
        if b.pop3_port.is_some() {
            out.push(BackendTarget::new(b.name.clone(), Protocol::Pop3));
        }
    }
    out
}

/// Load the server certificates named in the config.
pub fn load_tls(t: &mailgate_config::TlsConfig) -> Result<ServerTls, crate::tls::TlsError> {
    let default = CertSpec {
        cert: t.cert.clone(),
        key: t.key.clone(),
        names: Vec::new(),
    };
    let sni: Vec<CertSpec> = t
        .sni
        .iter()
        .map(|s| CertSpec {
            cert: s.cert.clone(),
            key: s.key.clone(),
            names: s.names.clone(),
        })
        .collect();
    ServerTls::load(&default, &sni)
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
    shared: Arc<Shared>,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) {
    for (kind, l) in listeners.public {
        if let Ok(addr) = l.local_addr() {
            tracing::info!(listener = kind.name(), %addr, "listening");
        }
        tokio::spawn(listener::accept_loop(shared.clone(), kind, l));
    }
    shared.metrics.set_routes(&shared.routing.current());
    shared.start_probes();
    let pruner = shared.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tick.tick() => pruner.auth_failures.prune(),
                _ = pruner.force.cancelled() => break,
            }
        }
    });
    shutdown.await;
    let grace = shared.config.shutdown_grace;
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        active = shared.tracker.len(),
        "shutdown: no new connections; pre-auth sessions told BYE"
    );
    shared.shutdown.cancel();
    shared.tracker.close();
    if tokio::time::timeout(grace, shared.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            cut_off = shared.tracker.len(),
            "shutdown grace over; closing spliced sessions"
        );
        shared.force.cancel();
        // Sessions close spread over the close window, each at a quiet moment.
        let window = shared.config.shutdown_close_window;
        let _ = tokio::time::timeout(window + Duration::from_secs(5), shared.tracker.wait()).await;
    }
    tracing::info!("shutdown complete");
}
