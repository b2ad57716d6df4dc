//! What every session uses, as narrow handles: the runtime snapshot, admission, the
//! per-address limits, the backend client, metrics and the process lifecycle. Each handle
//! keeps its fields private and offers verbs; a session never reaches through one handle
//! into another.

use std::sync::{Arc, OnceLock};

use mailgate_health::CapabilityBook;

use super::SessionMetrics;
use crate::admission::Admission;
use crate::backend::BackendClient;
use crate::client_limits::ClientLimits;
use crate::lifecycle::Lifecycle;
use crate::runtime::{Runtime, RuntimeHandle};

/// The handles sessions share.
#[derive(Debug)]
pub struct SessionContext {
    runtime: RuntimeHandle,
    admission: Admission,
    clients: ClientLimits,
    backends: Arc<BackendClient>,
    metrics: Arc<SessionMetrics>,
    lifecycle: Arc<Lifecycle>,
    capabilities: OnceLock<CapabilityBook>,
}

impl SessionContext {
    /// Assemble the handles (the proxy does this once).
    pub fn new(
        runtime: RuntimeHandle,
        admission: Admission,
        clients: ClientLimits,
        backends: Arc<BackendClient>,
        metrics: Arc<SessionMetrics>,
        lifecycle: Arc<Lifecycle>,
    ) -> Self {
        SessionContext {
            runtime,
            admission,
            clients,
            backends,
            metrics,
            lifecycle,
            capabilities: OnceLock::new(),
        }
    }

    /// Take what the front engines advertise from `book` (the probes fill it); set once.
    /// Until then sessions advertise everything mailgate can do.
    pub fn set_capabilities(&self, book: CapabilityBook) {
        let _ = self.capabilities.set(book);
    }

    /// What every backend a login over `protocol` can reach in `table` supports: what
    /// the session's front engine may advertise.
    pub fn advertised(
        &self,
        table: &mailgate_config::RoutingTable,
        protocol: mailgate_proto::Protocol,
    ) -> mailgate_proto::Advertised {
        match self.capabilities.get() {
            Some(book) => crate::capabilities::advertised(book, table, protocol),
            None => mailgate_proto::Advertised::default(),
        }
    }

    /// The configuration snapshot in force (a session takes it once).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.snapshot()
    }

    /// Admission to backends.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Per-address limits.
    pub fn clients(&self) -> &ClientLimits {
        &self.clients
    }

    /// The backend client.
    pub fn backends(&self) -> &BackendClient {
        &self.backends
    }

    /// Metrics.
    pub fn metrics(&self) -> &SessionMetrics {
        &self.metrics
    }

    /// Shutdown signals and the session tracker.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }
}
