//! Admission of a login, as the session driver sees it: the health view decides (state,
//! drain, budget, logins in flight, slow start, fallback); this module ties its RAII
//! guards to the routing snapshot, feeds passive health signals and metrics, and registers
//! spliced sessions for kicks.

use std::sync::Arc;
use std::time::Duration;

use mailgate_config::{Backend, RoutingTable};
use mailgate_health::{
    Activity, HealthView, KickHandle, KickRegistry, KickRequest, LoginPermit, PassiveSignal,
    RefusalReason, SessionGuard,
};

mod login_metrics;

pub use login_metrics::LoginMetrics;

use crate::metrics::LoginResult;
use mailgate_proto::Protocol;

/// Admission, health reporting and kicks for sessions.
#[derive(Debug)]
pub struct Admission {
    health: HealthView,
    kicks: KickRegistry,
    metrics: Arc<LoginMetrics>,
}

impl Admission {
    /// Wrap the shared health view.
    pub fn new(health: HealthView, kicks: KickRegistry, metrics: Arc<LoginMetrics>) -> Self {
        Admission {
            health,
            kicks,
            metrics,
        }
    }

    /// Count a login whose outcome no backend decided (no route, not admitted).
    pub fn count(&self, backend: &str, protocol: Protocol, result: LoginResult) {
        self.metrics.login(backend, protocol, result);
    }

    /// How long a session must be quiet before mailgate closes it (kicks, shutdown).
    pub fn quiet_period(&self) -> Duration {
        self.health.settings().kick_quiet
    }

    fn permit(&self, permit: LoginPermit, backend: Arc<Backend>, protocol: Protocol) -> Permit {
        Permit {
            permit,
            backend,
            protocol,
            health: self.health.clone(),
            kicks: self.kicks.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Admit a retry of a failed login on `backend`'s fallback, if it has one that admits.
    pub fn admit_fallback(
        &self,
        table: &RoutingTable,
        backend: &Arc<Backend>,
        protocol: Protocol,
    ) -> Option<Permit> {
        let fallback = backend.fallback.as_deref().filter(|f| *f != backend.name)?;
        let chosen = table.backend(fallback)?.clone();
        match self.health.admit(fallback) {
            Ok(permit) => Some(self.permit(permit, chosen, protocol)),
            Err(refusal) => {
                self.metrics.refused(fallback, refusal.reason);
                None
            }
        }
    }

    /// Admit a login for `backend` (or its fallback while it does not admit).
    pub fn admit(
        &self,
        table: &RoutingTable,
        backend: &Arc<Backend>,
        protocol: Protocol,
    ) -> Result<Permit, RefusalReason> {
        let result = self
            .health
            .admit_with_fallback(&backend.name, backend.fallback.as_deref());
        match result {
            Ok(permit) => {
                let chosen = table
                    .backend(permit.backend())
                    .cloned()
                    .unwrap_or_else(|| backend.clone());
                Ok(self.permit(permit, chosen, protocol))
            }
            Err(refusal) => {
                self.metrics.refused(&backend.name, refusal.reason);
                Err(refusal.reason)
            }
        }
    }
}

/// A login in flight, counted against its backend until dropped or turned into a session.
#[derive(Debug)]
pub struct Permit {
    permit: LoginPermit,
    backend: Arc<Backend>,
    protocol: Protocol,
    health: HealthView,
    kicks: KickRegistry,
    metrics: Arc<LoginMetrics>,
}

impl Permit {
    /// The backend admitted (the fallback when the primary did not admit).
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Feed passive health with what this login showed about the backend.
    pub fn report(&self, signal: PassiveSignal) {
        self.health.report(&self.backend.name, signal);
    }

    /// Time a relayed login in `backend_login_duration_seconds` (every verdict; the
    /// health latency window only gets accepted logins, see [`PassiveSignal::Answered`]).
    pub fn observe_duration(&self, total: Duration) {
        self.metrics
            .observe_duration(&self.backend.name, self.protocol, total.as_secs_f64());
    }

    /// Count this login's outcome in `logins_total`.
    pub fn count(&self, result: LoginResult) {
        self.metrics
            .login(&self.backend.name, self.protocol, result);
    }

    /// The login succeeded: hold a session slot and register for kicks.
    pub fn into_session(self, domain: &str, user: &str) -> SessionSlot {
        let sessions = self.metrics.sessions(&self.backend.name, self.protocol);
        sessions.inc();
        SessionSlot {
            kick: self.kicks.register(self.backend.name.clone(), domain, user),
            _guard: self.permit.into_session(),
            activity: Arc::new(Activity::new()),
            sessions,
        }
    }
}

/// A spliced session's place in its backend's budget and in the kick registry.
#[derive(Debug)]
pub struct SessionSlot {
    _guard: SessionGuard,
    kick: KickHandle,
    activity: Arc<Activity>,
    sessions: prometheus_client::metrics::gauge::Gauge,
}

impl SessionSlot {
    /// Marker the splice touches whenever bytes move.
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// Resolves when a kick asks this session to close (at a quiet moment).
    pub async fn kicked(&self) -> KickRequest {
        self.kick.close_signal(&self.activity).await
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.sessions.dec();
    }
}
