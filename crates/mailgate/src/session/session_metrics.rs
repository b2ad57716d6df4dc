//! The session's metric families: open sessions per listener, spliced bytes, kicks.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::endpoint::ListenerKind;
use crate::metrics::{
    BytesLabel, ConnRefusal, ConnRefusedLabel, Direction, ListenerLabel, MetricGroup, names,
};

/// `sessions_active`, `bytes_total`, `kicks_total`.
#[derive(Debug, Default)]
pub struct SessionMetrics {
    sessions_active: Family<ListenerLabel, Gauge>,
    bytes: Family<BytesLabel, Counter>,
    kicks: Counter,
    refused: Family<ConnRefusedLabel, Counter>,
}

impl SessionMetrics {
    /// A gauge of open sessions on `listener`; decremented when the guard drops.
    pub fn session_opened(&self, listener: ListenerKind) -> SessionGauge {
        let g = self
            .sessions_active
            .get_or_create(&ListenerLabel {
                listener: listener.name(),
            })
            .clone();
        g.inc();
        SessionGauge(g)
    }

    /// Add spliced bytes of a finished session.
    pub fn add_bytes(&self, backend: &str, up: u64, down: u64) {
        for (direction, n) in [
            (Direction::ClientToBackend, up),
            (Direction::BackendToClient, down),
        ] {
            self.bytes
                .get_or_create(&BytesLabel {
                    backend: backend.to_string(),
                    direction,
                })
                .inc_by(n);
        }
    }

    /// A connection was refused before its greeting.
    pub fn refused_connection(&self, reason: ConnRefusal) {
        self.refused
            .get_or_create(&ConnRefusedLabel { reason })
            .inc();
    }

    /// A spliced session was closed by a kick.
    pub fn kicked(&self) {
        self.kicks.inc();
    }
}

impl MetricGroup for SessionMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            names::SESSIONS_ACTIVE,
            "Open client sessions per listener",
            self.sessions_active.clone(),
        );
        r.register(
            names::BYTES,
            "Bytes spliced, by direction",
            self.bytes.clone(),
        );
        r.register(
            names::KICKS,
            "Spliced sessions closed by a kick",
            self.kicks.clone(),
        );
        r.register(
            names::CONNECTIONS_REFUSED,
            "Client connections refused before the greeting, by limit",
            self.refused.clone(),
        );
    }

    fn forget_backend(&self, backend: &str) {
        for direction in Direction::ALL {
            self.bytes.remove(&BytesLabel {
                backend: backend.into(),
                direction,
            });
        }
    }
}

/// Decrements `sessions_active` when dropped.
#[derive(Debug)]
pub struct SessionGauge(Gauge);

impl Drop for SessionGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}
