//! The login metric families: logins by result, refusals by reason, spliced sessions per
//! backend (the budget in use), login durations. Per-backend handles are built once per
//! routing table ([`LoginMetrics::sync_backends`]), so a login updates its counters without
//! allocating label strings.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use mailgate_config::RoutingTable;
use mailgate_health::RefusalReason;
use mailgate_proto::Protocol;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::{
    BackendProtocol, LoginLabel, LoginResult, MetricGroup, PROTOCOLS, RefusedLabel,
    latency_histogram, names,
};

fn pindex(p: Protocol) -> usize {
    match p {
        Protocol::Imap => 0,
        Protocol::Pop3 => 1,
    }
}

fn rindex(r: LoginResult) -> usize {
    LoginResult::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

/// One backend's series, looked up once per routing table.
#[derive(Debug)]
struct BackendHandles {
    logins: [[Counter; 6]; 2],
    sessions: [Gauge; 2],
    duration: [Histogram; 2],
}

/// `logins_total`, `refused_total`, `backend_sessions`, `backend_login_duration_seconds`.
#[derive(Debug)]
pub struct LoginMetrics {
    logins: Family<LoginLabel, Counter>,
    refused: Family<RefusedLabel, Counter>,
    backend_sessions: Family<BackendProtocol, Gauge>,
    login_duration: Family<BackendProtocol, Histogram>,
    handles: ArcSwap<HashMap<String, Arc<BackendHandles>>>,
}

impl Default for LoginMetrics {
    fn default() -> Self {
        LoginMetrics {
            logins: Family::default(),
            refused: Family::default(),
            backend_sessions: Family::default(),
            login_duration: Family::new_with_constructor(latency_histogram),
            handles: ArcSwap::from_pointee(HashMap::new()),
        }
    }
}

impl LoginMetrics {
    /// Build the per-backend handles for `table` (at start and after every reload). Every
    /// backend exports its session gauge, 0 included, so that ratios and alerts see it.
    pub fn sync_backends(&self, table: &RoutingTable) {
        let mut map = HashMap::new();
        for b in table.backends() {
            let bp = |p: &'static str| BackendProtocol {
                backend: b.name.clone(),
                protocol: p,
            };
            let logins = PROTOCOLS.map(|p| {
                LoginResult::ALL.map(|result| {
                    self.logins
                        .get_or_create(&LoginLabel {
                            backend: b.name.clone(),
                            protocol: p,
                            result,
                        })
                        .clone()
                })
            });
            let handles = BackendHandles {
                logins,
                sessions: PROTOCOLS.map(|p| self.backend_sessions.get_or_create(&bp(p)).clone()),
                duration: PROTOCOLS.map(|p| self.login_duration.get_or_create(&bp(p)).clone()),
            };
            map.insert(b.name.clone(), Arc::new(handles));
        }
        self.handles.store(Arc::new(map));
    }

    fn handles(&self, backend: &str) -> Option<Arc<BackendHandles>> {
        self.handles.load().get(backend).cloned()
    }

    /// Count a login outcome (`backend` is `none` without a route).
    pub fn login(&self, backend: &str, protocol: Protocol, result: LoginResult) {
        match self.handles(backend) {
            Some(h) => {
                h.logins[pindex(protocol)][rindex(result)].inc();
            }
            None => {
                self.logins
                    .get_or_create(&LoginLabel {
                        backend: backend.to_string(),
                        protocol: protocol.as_str(),
                        result,
                    })
                    .inc();
            }
        }
    }

    /// Count a login refused before it reached the backend.
    pub fn refused(&self, backend: &str, reason: RefusalReason) {
        self.refused
            .get_or_create(&RefusedLabel {
                backend: backend.to_string(),
                reason: reason.as_str(),
            })
            .inc();
    }

    /// The gauge of spliced sessions of `backend` over `protocol`.
    pub fn sessions(&self, backend: &str, protocol: Protocol) -> Gauge {
        match self.handles(backend) {
            Some(h) => h.sessions[pindex(protocol)].clone(),
            None => self
                .backend_sessions
                .get_or_create(&BackendProtocol {
                    backend: backend.to_string(),
                    protocol: protocol.as_str(),
                })
                .clone(),
        }
    }

    /// Time a relayed login, connect to verdict.
    pub fn observe_duration(&self, backend: &str, protocol: Protocol, secs: f64) {
        match self.handles(backend) {
            Some(h) => h.duration[pindex(protocol)].observe(secs),
            None => self
                .login_duration
                .get_or_create(&BackendProtocol {
                    backend: backend.to_string(),
                    protocol: protocol.as_str(),
                })
                .observe(secs),
        }
    }
}

impl MetricGroup for LoginMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(names::LOGINS, "Logins by result", self.logins.clone());
        r.register(
            names::REFUSED,
            "Logins refused before reaching the backend, by reason",
            self.refused.clone(),
        );
        r.register(
            names::BACKEND_SESSIONS,
            "Spliced sessions held by the backend",
            self.backend_sessions.clone(),
        );
        r.register(
            names::BACKEND_LOGIN_DURATION,
            "Duration of relayed logins, connect to verdict",
            self.login_duration.clone(),
        );
    }

    fn forget_backend(&self, backend: &str) {
        for protocol in PROTOCOLS {
            let bp = BackendProtocol {
                backend: backend.into(),
                protocol,
            };
            // A session still spliced to the removed backend keeps its series until it ends.
            if self.backend_sessions.get_or_create(&bp).get() <= 0 {
                self.backend_sessions.remove(&bp);
            }
            self.login_duration.remove(&bp);
            for result in LoginResult::ALL {
                self.logins.remove(&LoginLabel {
                    backend: backend.into(),
                    protocol,
                    result,
                });
            }
        }
        for reason in RefusalReason::ALL {
            self.refused.remove(&RefusedLabel {
                backend: backend.into(),
                reason: reason.as_str(),
            });
        }
    }
}
