//! The gauges that mirror state rather than count events — health state, drain, budgets,
//! logins in flight, the blast-radius guard, the certificates' expiry — refreshed from the
//! health view and the runtime snapshot right before each scrape.

use std::sync::atomic::AtomicI64;

use mailgate_health::{BackendStatus, HealthState};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{BackendLabel, MetricGroup, StateLabel, names};

/// `backend_up`, `backend_state`, `backend_drained`, `backend_max_sessions`,
/// `backend_logins_in_flight`, `backend_down_suppressed`,
/// `tls_certificate_not_after_timestamp_seconds`.
#[derive(Debug, Default)]
pub struct StateGauges {
    up: Family<BackendLabel, Gauge>,
    state: Family<StateLabel, Gauge>,
    drained: Family<BackendLabel, Gauge>,
    max_sessions: Family<BackendLabel, Gauge>,
    logins_in_flight: Family<BackendLabel, Gauge>,
    down_suppressed: Family<BackendLabel, Gauge>,
    cert_not_after: Gauge<i64, AtomicI64>,
}

impl StateGauges {
    /// Mirror `statuses` (one per backend in the health view) and the certificates.
    pub fn refresh(&self, statuses: &[BackendStatus], cert_not_after: Option<i64>) {
        for s in statuses {
            self.set_backend(s);
        }
        if let Some(t) = cert_not_after {
            self.cert_not_after.set(t);
        }
    }

    fn set_backend(&self, s: &BackendStatus) {
        let b = BackendLabel {
            backend: s.name.clone(),
        };
        let admitting_by_health = s.state != HealthState::Down || s.down_suppressed;
        self.up
            .get_or_create(&b)
            .set(i64::from(admitting_by_health));
        for state in HealthState::ALL {
            self.state
                .get_or_create(&StateLabel {
                    backend: s.name.clone(),
                    state: state.as_str(),
                })
                .set(i64::from(s.state == state));
        }
        self.drained.get_or_create(&b).set(i64::from(s.drained));
        self.down_suppressed
            .get_or_create(&b)
            .set(i64::from(s.down_suppressed));
        self.logins_in_flight
            .get_or_create(&b)
            .set(i64::from(s.logins_in_flight));
        match s.max_sessions {
            Some(max) => {
                self.max_sessions.get_or_create(&b).set(i64::from(max));
            }
            None => {
                self.max_sessions.remove(&b);
            }
        }
    }
}

impl MetricGroup for StateGauges {
    fn register(&self, r: &mut Registry) {
        r.register(
            names::BACKEND_UP,
            "1 when the backend admits logins by health (up or degraded)",
            self.up.clone(),
        );
        r.register(
            names::BACKEND_STATE,
            "Health state of the backend (1 for the current state)",
            self.state.clone(),
        );
        r.register(
            names::BACKEND_DRAINED,
            "1 when an operator drained the backend",
            self.drained.clone(),
        );
        r.register(
            names::BACKEND_MAX_SESSIONS,
            "Session budget of the backend (max_sessions)",
            self.max_sessions.clone(),
        );
        r.register(
            names::TLS_CERT_NOT_AFTER,
            "Earliest notAfter of the served certificates",
            self.cert_not_after.clone(),
        );
        r.register(
            names::BACKEND_LOGINS_IN_FLIGHT,
            "Logins waiting for the backend's verdict",
            self.logins_in_flight.clone(),
        );
        r.register(
            names::BACKEND_DOWN_SUPPRESSED,
            "1 when the backend is down but still admitted (blast-radius guard)",
            self.down_suppressed.clone(),
        );
    }

    fn forget_backend(&self, backend: &str) {
        let b = BackendLabel {
            backend: backend.to_string(),
        };
        self.up.remove(&b);
        self.drained.remove(&b);
        self.down_suppressed.remove(&b);
        self.logins_in_flight.remove(&b);
        self.max_sessions.remove(&b);
        for state in HealthState::ALL {
            self.state.remove(&StateLabel {
                backend: backend.into(),
                state: state.as_str(),
            });
        }
    }
}
