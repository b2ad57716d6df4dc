//! The translation from configuration to the health model: health settings from
//! `health:`, budgets and probe targets from the routing table. In one place, so that the
//! start and every reload derive them the same way.

use mailgate_config::{HealthConfig, RoutingTable};
use mailgate_health::{BackendSpec, BackendTarget, DrainNote, HealthSettings};
use mailgate_proto::Protocol;

/// `health:` of mailgate.yaml as the health model's settings.
pub fn health_settings(h: &HealthConfig) -> HealthSettings {
    HealthSettings {
        interval: h.interval,
        timeout: h.timeout,
        fall: h.fall,
        rise: h.rise,
        degraded_latency: h.degraded_latency,
        max_auto_down_share: h.max_auto_down_share,
        slow_start: h.slow_start,
        slow_start_logins_in_flight: h.slow_start_logins_in_flight,
        kick_window: h.kick_window,
        ..HealthSettings::default()
    }
}

/// Budgets and file drains of every backend in a routing table.
pub fn backend_specs(table: &RoutingTable) -> Vec<BackendSpec> {
    table
        .backends()
        .map(|b| BackendSpec {
            name: b.name.clone(),
            max_sessions: b.max_sessions,
            max_logins_in_flight: b.max_logins_in_flight,
            drain: b.drain.as_ref().map(|d| DrainNote {
                reason: d.reason.clone(),
                since: None,
            }),
        })
        .collect()
}

/// One probe target per backend and protocol it serves.
pub fn probe_targets(table: &RoutingTable) -> Vec<BackendTarget> {
    let mut out = Vec::new();
    for b in table.backends() {
        if b.imap_port.is_some() {
            out.push(BackendTarget::new(b.name.clone(), Protocol::Imap));
        }
        if b.pop3_port.is_some() {
            out.push(BackendTarget::new(b.name.clone(), Protocol::Pop3));
        }
    }
    out
}
