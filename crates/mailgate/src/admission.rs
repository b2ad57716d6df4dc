//! Admission of a login, as the session driver sees it: the health view decides (state,
//! drain, budget, logins in flight, slow start, fallback); this module ties its RAII
//! guards to the routing snapshot, feeds passive health signals and metrics, and registers
//! spliced sessions for kicks.

use std::sync::Arc;
use std::time::Duration;

use mailgate_health::{
    Activity, HealthView, KickHandle, KickRegistry, KickRequest, LoginPermit, PassiveSignal,
    RefusalReason, SessionGuard,
};
use mailgate_routing::{Backend, RoutingTable};

use crate::metrics::{BackendProtocol, Metrics};
use crate::upstream::RelayError;
use mailgate_proto::Protocol;

/// Admission, health reporting and kicks for sessions.
#[derive(Debug)]
pub struct Admission {
    /// Health, drain and budgets of every backend.
    pub health: HealthView,
    /// Spliced sessions, for kicks.
    pub kicks: KickRegistry,
    metrics: Arc<Metrics>,
}

impl Admission {
    /// Wrap the shared health view.
    pub fn new(health: HealthView, kicks: KickRegistry, metrics: Arc<Metrics>) -> Self {
        Admission {
            health,
            kicks,
            metrics,
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
                Ok(Permit {
                    permit,
                    backend: chosen,
                    protocol,
                    health: self.health.clone(),
                    metrics: self.metrics.clone(),
                })
            }
            Err(refusal) => {
                self.metrics.refused(&backend.name, refusal.reason.as_str());
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
    metrics: Arc<Metrics>,
}

impl Permit {
    /// The backend admitted (the fallback when the primary did not admit).
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// The backend gave a verdict after `latency` (passive latency signal).
    ///
    /// Every verdict is timed in `backend_login_duration_seconds`; only accepted logins
    /// feed the health latency window, because a refused password carries the backend's
    /// deliberate failure delay (Dovecot: 2 s) and password guessing must not make a
    /// healthy backend look slow.
    pub fn report_verdict(&self, latency: Duration, accepted: bool) {
        if accepted {
            self.health
                .report(&self.backend.name, PassiveSignal::LoginLatency(latency));
        }
        self.metrics
            .login_duration
            .get_or_create(&BackendProtocol {
                backend: self.backend.name.clone(),
                protocol: self.protocol.as_str().into(),
            })
            .observe(latency.as_secs_f64());
    }

    /// The relay failed before a verdict.
    pub fn report_failure(&self, err: &RelayError) {
        let signal = match err {
            RelayError::GreetingTimeout => PassiveSignal::GreetingTimeout,
            RelayError::LoginTimeout => PassiveSignal::LoginTimeout,
            _ => PassiveSignal::ConnectFailed,
        };
        self.health.report(&self.backend.name, signal);
    }

    /// The login succeeded: hold a session slot and register for kicks.
    pub fn into_session(self, kicks: &KickRegistry, domain: &str, user: &str) -> SessionSlot {
        let sessions = self
            .metrics
            .backend_sessions
            .get_or_create(&BackendProtocol {
                backend: self.backend.name.clone(),
                protocol: self.protocol.as_str().into(),
            })
            .clone();
        sessions.inc();
        SessionSlot {
            kick: kicks.register(self.backend.name.clone(), domain, user),
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
