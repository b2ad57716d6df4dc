//! Prometheus metrics (prefix `mailgate_`). Labels are per backend, protocol, listener or
//! result only — never per domain or user. Names are listed in docs/metrics.md.
//!
//! Counters and histograms are updated where things happen; gauges that mirror state
//! (health, drain, sessions, budgets, routes) are refreshed from the health view and the
//! routing table right before each scrape.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64};

use mailgate_health::{BackendStatus, HealthState, RefusalReason};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `{backend}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    /// Backend name.
    pub backend: String,
}

/// `{backend,state}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// Backend name.
    pub backend: String,
    /// `up`, `degraded` or `down`.
    pub state: String,
}

/// `{backend,protocol}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendProtocol {
    /// Backend name.
    pub backend: String,
    /// `imap` or `pop3`.
    pub protocol: String,
}

/// The `result` label of `mailgate_logins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    /// The backend accepted the login.
    Ok,
    /// The backend refused the credentials.
    Rejected,
    /// The backend refused for now (`NO [UNAVAILABLE]`, `-ERR [SYS/TEMP]`, `[IN-USE]`, ...).
    TempFailure,
    /// No verdict: the backend could not be reached, timed out or broke the protocol.
    BackendError,
    /// mailgate did not admit the login (down, drained, over budget).
    Unavailable,
    /// No backend for the login's domain.
    NoRoute,
}

impl LoginResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginResult::Ok => "ok",
            LoginResult::Rejected => "rejected",
            LoginResult::TempFailure => "temp_failure",
            LoginResult::BackendError => "backend_error",
            LoginResult::Unavailable => "unavailable",
            LoginResult::NoRoute => "no_route",
        }
    }
}

/// `{backend,protocol,result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabel {
    /// Backend name (`none` when no route matched).
    pub backend: String,
    /// `imap` or `pop3`.
    pub protocol: String,
    /// `ok`, `rejected`, `unavailable`, `no_route`.
    pub result: String,
}

/// `{backend,reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabel {
    /// Backend name.
    pub backend: String,
    /// Why (`down`, `drained`, `over_budget`, ...).
    pub reason: String,
}

/// `{listener}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// `imap`, `imaps`, `pop3`, `pop3s`.
    pub listener: String,
}

/// `{backend,direction}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabel {
    /// Backend name.
    pub backend: String,
    /// `client_to_backend` or `backend_to_client`.
    pub direction: String,
}

/// `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `success` or `failure`.
    pub result: String,
}

/// `{kind}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `domain`, `wildcard`, `user`, `default`.
    pub kind: String,
}

/// Buckets for login and probe latency: 1 ms … ~65 s.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

/// Every metric family mailgate exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `backend_up`.
    pub backend_up: Family<BackendLabel, Gauge>,
    /// `backend_state`.
    pub backend_state: Family<StateLabel, Gauge>,
    /// `backend_drained`.
    pub backend_drained: Family<BackendLabel, Gauge>,
    /// `backend_sessions`.
    pub backend_sessions: Family<BackendProtocol, Gauge>,
    /// `backend_max_sessions`.
    pub backend_max_sessions: Family<BackendLabel, Gauge>,
    /// `backend_probe_duration_seconds`.
    pub probe_duration: Family<BackendLabel, Histogram>,
    /// `backend_login_duration_seconds`.
    pub login_duration: Family<BackendProtocol, Histogram>,
    /// `logins_total`.
    pub logins: Family<LoginLabel, Counter>,
    /// `refused_total`.
    pub refused: Family<RefusedLabel, Counter>,
    /// `sessions_active`.
    pub sessions_active: Family<ListenerLabel, Gauge>,
    /// `bytes_total`.
    pub bytes: Family<BytesLabel, Counter>,
    /// `config_reloads_total`.
    pub reloads: Family<ResultLabel, Counter>,
    /// `config_last_reload_success_timestamp_seconds`.
    pub last_reload_success: Gauge<f64, AtomicU64>,
    /// `routes`.
    pub routes: Family<KindLabel, Gauge>,
    /// `kicks_total`: spliced sessions closed by a kick.
    pub kicks: Counter,
    /// `tls_certificate_not_after_timestamp_seconds`: earliest expiry of the served certs.
    pub cert_not_after: Gauge<i64, AtomicI64>,
    /// `backend_logins_in_flight`.
    pub backend_logins_in_flight: Family<BackendLabel, Gauge>,
    /// `backend_down_suppressed`.
    pub backend_down_suppressed: Family<BackendLabel, Gauge>,
    /// Backends exported at the last refresh (to drop the series of removed ones), and the
    /// lock that keeps a refresh and its encoding together.
    scrape: Mutex<BTreeSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Create and register every family.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mailgate");
        let m = Metrics {
            backend_up: Family::default(),
            backend_state: Family::default(),
            backend_drained: Family::default(),
            backend_sessions: Family::default(),
            backend_max_sessions: Family::default(),
            probe_duration: Family::new_with_constructor(latency_histogram),
            login_duration: Family::new_with_constructor(latency_histogram),
            logins: Family::default(),
            refused: Family::default(),
            sessions_active: Family::default(),
            bytes: Family::default(),
            reloads: Family::default(),
            last_reload_success: Gauge::default(),
            routes: Family::default(),
            kicks: Counter::default(),
            cert_not_after: Gauge::default(),
            backend_logins_in_flight: Family::default(),
            backend_down_suppressed: Family::default(),
            scrape: Mutex::new(BTreeSet::new()),
            registry: Registry::default(),
        };
        registry.register(
            "backend_up",
            "1 when the backend admits logins by health (up or degraded)",
            m.backend_up.clone(),
        );
        registry.register(
            "backend_state",
            "Health state of the backend (1 for the current state)",
            m.backend_state.clone(),
        );
        registry.register(
            "backend_drained",
            "1 when an operator drained the backend",
            m.backend_drained.clone(),
        );
        registry.register(
            "backend_sessions",
            "Spliced sessions held by the backend",
            m.backend_sessions.clone(),
        );
        registry.register(
            "backend_max_sessions",
            "Session budget of the backend (max_sessions)",
            m.backend_max_sessions.clone(),
        );
        registry.register(
            "backend_probe_duration_seconds",
            "Duration of active health probes",
            m.probe_duration.clone(),
        );
        registry.register(
            "backend_login_duration_seconds",
            "Duration of relayed logins, connect to verdict",
            m.login_duration.clone(),
        );
        registry.register("logins", "Logins by result", m.logins.clone());
        registry.register(
            "refused",
            "Logins refused before reaching the backend, by reason",
            m.refused.clone(),
        );
        registry.register(
            "sessions_active",
            "Open client sessions per listener",
            m.sessions_active.clone(),
        );
        registry.register("bytes", "Bytes spliced, by direction", m.bytes.clone());
        registry.register(
            "config_reloads",
            "Routing/certificate reloads by result",
            m.reloads.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load",
            m.last_reload_success.clone(),
        );
        registry.register("routes", "Routing table entries by kind", m.routes.clone());
        registry.register(
            "kicks",
            "Spliced sessions closed by a kick",
            m.kicks.clone(),
        );
        registry.register(
            "tls_certificate_not_after_timestamp_seconds",
            "Earliest notAfter of the served certificates",
            m.cert_not_after.clone(),
        );
        registry.register(
            "backend_logins_in_flight",
            "Logins waiting for the backend's verdict",
            m.backend_logins_in_flight.clone(),
        );
        registry.register(
            "backend_down_suppressed",
            "1 when the backend is down but still admitted (blast-radius guard)",
            m.backend_down_suppressed.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped: the log's destination could not keep up",
            crate::logging::DroppedLinesMetric,
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Count a login outcome.
    pub fn login(&self, backend: &str, protocol: &str, result: LoginResult) {
        self.logins
            .get_or_create(&LoginLabel {
                backend: backend.to_string(),
                protocol: protocol.to_string(),
                result: result.as_str().to_string(),
            })
            .inc();
    }

    /// Count a refused login.
    pub fn refused(&self, backend: &str, reason: &str) {
        self.refused
            .get_or_create(&RefusedLabel {
                backend: backend.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Count a spliced session closed by a kick.
    pub fn kicked(&self) {
        self.kicks.inc();
    }

    /// Add spliced bytes of a finished session.
    pub fn add_bytes(&self, backend: &str, up: u64, down: u64) {
        for (direction, n) in [("client_to_backend", up), ("backend_to_client", down)] {
            self.bytes
                .get_or_create(&BytesLabel {
                    backend: backend.to_string(),
                    direction: direction.to_string(),
                })
                .inc_by(n);
        }
    }

    /// Count a reload; on success also stamp the time.
    pub fn record_reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: if ok { "success" } else { "failure" }.into(),
            })
            .inc();
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.last_reload_success.set(now);
        }
    }

    /// Mirror the routing table's size.
    pub fn set_routes(&self, table: &mailgate_config::RoutingTable) {
        let c = table.counts();
        for (kind, n) in [
            ("domain", c.domains),
            ("wildcard", c.wildcards),
            ("user", c.users),
            ("default", c.default),
        ] {
            self.routes
                .get_or_create(&KindLabel { kind: kind.into() })
                .set(n as i64);
        }
    }

    /// A gauge of open sessions on `listener`; decrement by dropping the guard.
    pub fn session_opened(&self, listener: &str) -> SessionGauge {
        let g = self
            .sessions_active
            .get_or_create(&ListenerLabel {
                listener: listener.to_string(),
            })
            .clone();
        g.inc();
        SessionGauge(g)
    }
}

impl Metrics {
    /// Refresh the gauges that mirror health state from `statuses` (one per backend in the
    /// health view), drop every series of backends that are gone, then encode. Refresh and
    /// encoding run under one lock so that concurrent scrapes never see half a refresh.
    pub fn encode_with_health(
        &self,
        statuses: &[BackendStatus],
        cert_not_after: Option<i64>,
    ) -> String {
        let mut known = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let current: BTreeSet<String> = statuses.iter().map(|s| s.name.clone()).collect();
        for gone in known.difference(&current) {
            self.forget_backend(gone);
        }
        for s in statuses {
            self.set_backend_state(s);
        }
        *known = current;
        if let Some(t) = cert_not_after {
            self.cert_not_after.set(t);
        }
        self.encode()
    }

    fn set_backend_state(&self, s: &BackendStatus) {
        let b = BackendLabel {
            backend: s.name.clone(),
        };
        let admitting_by_health = s.state != HealthState::Down || s.down_suppressed;
        self.backend_up
            .get_or_create(&b)
            .set(i64::from(admitting_by_health));
        for state in HealthState::ALL {
            self.backend_state
                .get_or_create(&StateLabel {
                    backend: s.name.clone(),
                    state: state.as_str().into(),
                })
                .set(i64::from(s.state == state));
        }
        self.backend_drained
            .get_or_create(&b)
            .set(i64::from(s.drained));
        self.backend_down_suppressed
            .get_or_create(&b)
            .set(i64::from(s.down_suppressed));
        self.backend_logins_in_flight
            .get_or_create(&b)
            .set(i64::from(s.logins_in_flight));
        match s.max_sessions {
            Some(max) => {
                self.backend_max_sessions
                    .get_or_create(&b)
                    .set(i64::from(max));
            }
            None => {
                self.backend_max_sessions.remove(&b);
            }
        }
        for protocol in PROTOCOLS {
            // Export 0 for a backend without sessions, so that ratios and alerts see it.
            let _ = self.backend_sessions.get_or_create(&BackendProtocol {
                backend: s.name.clone(),
                protocol: protocol.into(),
            });
        }
    }

    /// Remove every series labelled with `backend` (it left the routing table).
    fn forget_backend(&self, backend: &str) {
        let b = BackendLabel {
            backend: backend.to_string(),
        };
        self.backend_up.remove(&b);
        self.backend_drained.remove(&b);
        self.backend_down_suppressed.remove(&b);
        self.backend_logins_in_flight.remove(&b);
        self.backend_max_sessions.remove(&b);
        self.probe_duration.remove(&b);
        for state in HealthState::ALL {
            self.backend_state.remove(&StateLabel {
                backend: backend.into(),
                state: state.as_str().into(),
            });
        }
        for protocol in PROTOCOLS {
            let bp = BackendProtocol {
                backend: backend.into(),
                protocol: protocol.into(),
            };
            // A session still spliced to the removed backend keeps its series until it ends.
            if self.backend_sessions.get_or_create(&bp).get() <= 0 {
                self.backend_sessions.remove(&bp);
            }
            self.login_duration.remove(&bp);
            for result in LOGIN_RESULTS {
                self.logins.remove(&LoginLabel {
                    backend: backend.into(),
                    protocol: protocol.into(),
                    result: result.into(),
                });
            }
        }
        for reason in RefusalReason::ALL {
            self.refused.remove(&RefusedLabel {
                backend: backend.into(),
                reason: reason.as_str().into(),
            });
        }
        for direction in DIRECTIONS {
            self.bytes.remove(&BytesLabel {
                backend: backend.into(),
                direction: direction.into(),
            });
        }
    }
}

/// Values of the `protocol` label.
const PROTOCOLS: [&str; 2] = ["imap", "pop3"];
/// Values of the `result` label of `logins_total`.
const LOGIN_RESULTS: [&str; 4] = ["ok", "rejected", "unavailable", "no_route"];
/// Values of the `direction` label of `bytes_total`.
const DIRECTIONS: [&str; 2] = ["client_to_backend", "backend_to_client"];

/// Decrements `sessions_active` when dropped.
#[derive(Debug)]
pub struct SessionGauge(Gauge);

impl Drop for SessionGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
