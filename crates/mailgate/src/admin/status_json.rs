//! `GET /status`: every backend's health, drain flag, sessions and budget, last probes and
//! last transition, plus the routing file's version and load time, as JSON for operators
//! and `mailgate ctl status`. Served on the admin listener only (it names hosts).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailgate_health::{BackendStatus, ProbeResult};
use mailgate_routing::RoutingTable;
use serde_json::{Value, json};

/// Process-wide facts shown next to the backends.
#[derive(Debug, Clone, Copy)]
pub struct ProcessInfo {
    /// `/readyz` would answer 200.
    pub ready: bool,
    /// Shutdown started.
    pub shutting_down: bool,
    /// Earliest notAfter of the served certificates (Unix seconds).
    pub cert_not_after: Option<i64>,
}

/// Unix seconds of a wall-clock time, to the millisecond.
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
        .unwrap_or(0.0)
}

/// RFC 3339 UTC, to the second.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn probe(p: &ProbeResult) -> Value {
    json!({
        "protocol": p.protocol.as_str(),
        "ok": p.ok,
        "latency_ms": ms(p.latency),
        "duration_ms": ms(p.duration),
        "at": rfc3339(p.at),
        "at_unix": unix(p.at),
        "error": p.error,
    })
}

fn backend(s: &BackendStatus, table: &RoutingTable) -> Value {
    let def = table.backend(&s.name);
    json!({
        "name": s.name,
        "public_name": def.and_then(|b| b.public_name.clone()),
        "host": def.map(|b| b.host.clone()),
        "imap_port": def.and_then(|b| b.imap_port),
        "pop3_port": def.and_then(|b| b.pop3_port),
        "state": s.state.as_str(),
        "drained": s.drained,
        "down_suppressed": s.down_suppressed,
        "admitting": s.admitting,
        "sessions": s.sessions,
        "max_sessions": s.max_sessions,
        "logins_in_flight": s.logins_in_flight,
        "max_logins_in_flight": s.max_logins_in_flight,
        "admit_share": s.admit_share,
        "login_latency_ms": s.latency.map(ms),
        "last_probe": s.last_probe.as_ref().map(probe),
        "probes": s.probes.iter().map(probe).collect::<Vec<_>>(),
        "last_transition": s.last_transition.as_ref().map(|(at, reason)| json!({
            "at": rfc3339(*at),
            "at_unix": unix(*at),
            "reason": reason,
        })),
        "since": rfc3339(s.since),
        "since_unix": unix(s.since),
    })
}

/// The whole `/status` document.
pub fn render(statuses: &[BackendStatus], table: &RoutingTable, info: ProcessInfo) -> Value {
    let counts = table.counts();
    json!({
        "ready": info.ready,
        "shutting_down": info.shutting_down,
        "version": env!("CARGO_PKG_VERSION"),
        "routing": {
            "file": table.source().display().to_string(),
            "version": table.version_hex(),
            "loaded_at": rfc3339(table.loaded_at()),
            "loaded_at_unix": unix(table.loaded_at()),
            "routes": {
                "domains": counts.domains,
                "wildcards": counts.wildcards,
                "users": counts.users,
                "default": counts.default,
            },
        },
        "tls_certificate_not_after": info.cert_not_after.map(|t| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0)))
        }),
        "backends": statuses.iter().map(|s| backend(s, table)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::testutil::{status, table};
    use mailgate_health::HealthState;

    #[test]
    fn status_json_has_every_field_operators_need() {
        let t = table();
        let statuses = vec![
            status("mail1", HealthState::Up),
            status("mail2", HealthState::Down),
        ];
        let info = ProcessInfo {
            ready: true,
            shutting_down: false,
            cert_not_after: Some(1_900_000_000),
        };
        let v = render(&statuses, &t, info);
        assert_eq!(v["ready"], true);
        assert_eq!(v["routing"]["version"], t.version_hex());
        assert_eq!(v["routing"]["routes"]["domains"], 2);
        assert!(v["tls_certificate_not_after"].as_str().is_some());
        let b = &v["backends"][1];
        assert_eq!(b["name"], "mail2");
        assert_eq!(b["state"], "down");
        assert_eq!(b["drained"], false);
        assert_eq!(b["sessions"], 12);
        assert_eq!(b["max_sessions"], 1400);
        assert_eq!(b["logins_in_flight"], 1);
        assert_eq!(b["last_probe"]["ok"], false);
        assert_eq!(b["last_probe"]["latency_ms"], 4.5);
        assert_eq!(b["last_probe"]["error"], "greeting: timed out after 2s");
        assert_eq!(
            b["last_transition"]["reason"],
            "3 probe failures: greeting timed out"
        );
        assert_eq!(v["backends"][0]["public_name"], "Area <A>");
        assert_eq!(v["backends"][1]["public_name"], Value::Null);
        // serde_json escapes what needs escaping: the document parses back.
        let text = serde_json::to_string(&v).expect("serialise");
        let back: Value = serde_json::from_str(&text).expect("parse");
        assert_eq!(back["backends"][0]["public_name"], "Area <A>");
        assert_eq!(back["backends"].as_array().map(Vec::len), Some(2));
    }
}
