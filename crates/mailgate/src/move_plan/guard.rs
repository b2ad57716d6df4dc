//! The reload guard: the reloader asks [`MoveGuard::check`] before it stores a new routing
//! table. When the moves would push a backend over its budget the reload is flagged — a
//! warning in the log, `mailgate_reload_guard_total{action}` and the backends in the
//! reload result — and with `reload_guard: strict` refused, so that nothing changes.

use std::sync::Mutex;

use mailgate_config::{ReloadGuard, RoutingTable};
use mailgate_health::KickRegistry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::MovePlan;
use crate::metrics::{MetricGroup, names};

/// `{action}` of the reload guard: `warned` or `refused`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardLabel {
    /// `warned` (applied anyway) or `refused`.
    pub action: &'static str,
}

/// A reload refused by `reload_guard: strict`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "reload_guard: strict: the moved sessions would push {} over max_sessions ({}); nothing changed",
    .backends.join(", "),
    .details.join("; ")
)]
pub struct GuardRefusal {
    /// The backends over budget.
    pub backends: Vec<String>,
    /// One line per backend (counts and budget).
    pub details: Vec<String>,
}

/// The guard's mode and its counter.
#[derive(Debug)]
pub struct MoveGuard {
    mode: Mutex<ReloadGuard>,
    actions: Family<GuardLabel, Counter>,
}

impl Default for MoveGuard {
    fn default() -> Self {
        MoveGuard::new(ReloadGuard::Warn)
    }
}

impl MoveGuard {
    /// A guard in `mode` (`reload_guard` of mailgate.yaml).
    pub fn new(mode: ReloadGuard) -> Self {
        MoveGuard {
            mode: Mutex::new(mode),
            actions: Family::default(),
        }
    }

    /// The mode in force.
    pub fn mode(&self) -> ReloadGuard {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the mode (for a reloader that applies `reload_guard` from a new config).
    pub fn set_mode(&self, mode: ReloadGuard) {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
    }

    /// The reload hook: `mode` is `reload_guard` of the candidate mailgate.yaml (so a
    /// reload that turns strict on is already guarded), `running` the table in force,
    /// `candidate` the one about to be stored. Returns the backends flagged (empty: within
    /// budget) and keeps `mode` as the mode in force; in strict mode a flagged reload is
    /// an error, the mode in force stays, and the caller must change nothing.
    pub fn check(
        &self,
        mode: ReloadGuard,
        running: &RoutingTable,
        candidate: &RoutingTable,
        kicks: &KickRegistry,
    ) -> Result<Vec<String>, GuardRefusal> {
        if running.version() == candidate.version() {
            self.set_mode(mode);
            return Ok(Vec::new());
        }
        let plan = MovePlan::budgets_for_registry(running, candidate, kicks);
        let over: Vec<_> = plan.over_budget().collect();
        if over.is_empty() {
            self.set_mode(mode);
            return Ok(Vec::new());
        }
        let backends: Vec<String> = over.iter().map(|b| b.backend.clone()).collect();
        let details: Vec<String> = over.iter().map(|b| b.describe()).collect();
        let action = match mode {
            ReloadGuard::Warn => "warned",
            ReloadGuard::Strict => "refused",
        };
        self.actions.get_or_create(&GuardLabel { action }).inc();
        tracing::warn!(
            reload_guard = mode.as_str(),
            backends = %backends.join(","),
            detail = %details.join("; "),
            sessions_to_kick = plan.sessions_to_kick,
            "reload would push backends over max_sessions{}",
            if mode == ReloadGuard::Strict { "; refused, nothing changed" } else { "; applying anyway" }
        );
        match mode {
            ReloadGuard::Warn => {
                self.set_mode(mode);
                Ok(backends)
            }
            ReloadGuard::Strict => Err(GuardRefusal { backends, details }),
        }
    }
}

impl MetricGroup for MoveGuard {
    fn register(&self, r: &mut Registry) {
        r.register(
            names::RELOAD_GUARD,
            "Reloads whose moved sessions would push a backend over max_sessions, by what the guard did",
            self.actions.clone(),
        );
    }
}
