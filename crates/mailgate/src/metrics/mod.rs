//! Prometheus metrics (prefix `mailgate_`). Labels are per backend, protocol, listener,
//! state, reason or result only — never per domain or user; every value comes from an enum
//! ([`labels`]) and every name from [`names`]. docs/metrics.md describes each family.
//!
//! Families are owned by the module that updates them, as a [`MetricGroup`]: sessions
//! (`session::SessionMetrics`), logins and budgets (`admission::LoginMetrics`), probes
//! (`prober::ProbeMetrics`), reloads (`reload::ConfigMetrics`), health-state gauges refreshed
//! at each scrape (`admin::StateGauges`) and the log writer. [`Metrics::build`] registers
//! every group, in one place (the proxy's assembly), plus `build_info` and the
//! `process_*` families ([`process`], read from `/proc` at each scrape).

pub mod build_info;
pub mod labels;
pub mod names;
pub mod process;

pub use labels::*;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The metric families one module owns.
pub trait MetricGroup: Debug + Send + Sync {
    /// Register every family with `registry` (names from [`names`]).
    fn register(&self, registry: &mut Registry);

    /// Drop every series labelled with `backend`: it left the routing table.
    fn forget_backend(&self, _backend: &str) {}
}

/// Buckets for login and probe latency: 1 ms … ~65 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

/// Every registered family, and the encoder for `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `process_*`: the client libraries' names, without the `mailgate_` prefix.
    process: Registry,
    groups: Vec<Arc<dyn MetricGroup>>,
    /// Backends exported at the last scrape (to drop the series of removed ones), and the
    /// lock that keeps a refresh and its encoding together.
    scrape: Mutex<BTreeSet<String>>,
}

impl Metrics {
    /// Register every group: the one place where families are registered.
    pub fn build(groups: Vec<Arc<dyn MetricGroup>>) -> Metrics {
        let mut registry = Registry::with_prefix("mailgate");
        for g in &groups {
            g.register(&mut registry);
        }
        build_info::register(&mut registry);
        let mut process = Registry::default();
        process.register_collector(Box::new(process::ProcessCollector));
        Metrics {
            registry,
            process,
            groups,
            scrape: Mutex::new(BTreeSet::new()),
        }
    }

    /// The text exposition after `refresh` ran, with the series of every backend not in
    /// `backends` (it left the routing table) dropped first. Refresh and encoding run under
    /// one lock, so concurrent scrapes never see half a refresh.
    pub fn encode_for(&self, backends: BTreeSet<String>, refresh: impl FnOnce()) -> String {
        let mut known = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        for gone in known.difference(&backends) {
            for g in &self.groups {
                g.forget_backend(gone);
            }
        }
        *known = backends;
        refresh();
        self.encode()
    }

    /// The text exposition as it stands.
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        let encoded = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &self.process))
            .and_then(|()| encode_eof(&mut out));
        if encoded.is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests;
