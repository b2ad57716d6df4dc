//! The reloader's metric families: `config_reloads_total{result}`,
//! `config_reloads_refused_total{reason}`, `config_last_reload_success_timestamp_seconds`
//! and `routes{kind}`.

use std::sync::atomic::AtomicU64;

use mailgate_config::RoutingTable;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{KindLabel, MetricGroup, ReloadLabel, ReloadResult, names};
use crate::reload_check::ReloadError;

/// `{reason}` of refused reloads (values: [`ReloadError::REASONS`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabel {
    /// Why the reload changed nothing.
    pub reason: &'static str,
}

/// The reloader's families.
#[derive(Debug, Default)]
pub struct ConfigMetrics {
    reloads: Family<ReloadLabel, Counter>,
    refused: Family<RefusedLabel, Counter>,
    last_success: Gauge<f64, AtomicU64>,
    routes: Family<KindLabel, Gauge>,
}

impl ConfigMetrics {
    /// Count a reload (the load at start counts as one); on success stamp the time.
    pub fn record_reload(&self, ok: bool) {
        let result = if ok {
            ReloadResult::Success
        } else {
            ReloadResult::Failure
        };
        self.reloads.get_or_create(&ReloadLabel { result }).inc();
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.last_success.set(now);
        }
    }

    /// Count a refused reload (a failure) with its reason.
    pub fn record_refused(&self, error: &ReloadError) {
        self.record_reload(false);
        self.refused
            .get_or_create(&RefusedLabel {
                reason: error.reason(),
            })
            .inc();
    }

    /// Mirror the routing table's size.
    pub fn set_routes(&self, table: &RoutingTable) {
        let c = table.counts();
        for (kind, n) in [
            ("domain", c.domains),
            ("wildcard", c.wildcards),
            ("user", c.users),
            ("default", c.default),
        ] {
            self.routes.get_or_create(&KindLabel { kind }).set(n as i64);
        }
    }
}

impl MetricGroup for ConfigMetrics {
    fn register(&self, r: &mut Registry) {
        // Every reason exported from the start (at 0), so that rate() sees the first one.
        for reason in ReloadError::REASONS {
            let _ = self.refused.get_or_create(&RefusedLabel { reason });
        }
        r.register(
            names::CONFIG_RELOADS,
            "Reloads of mailgate.yaml, the routing file and the certificates, by result",
            self.reloads.clone(),
        );
        r.register(
            names::CONFIG_RELOADS_REFUSED,
            "Reloads refused (nothing changed), by reason",
            self.refused.clone(),
        );
        r.register(
            names::CONFIG_LAST_RELOAD_SUCCESS,
            "Unix time of the last successful load",
            self.last_success.clone(),
        );
        r.register(
            names::ROUTES,
            "Routing table entries by kind",
            self.routes.clone(),
        );
    }
}
