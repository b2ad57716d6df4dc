//! Fixtures shared by the admin module's unit tests.

use std::path::Path;
use std::time::{Duration, SystemTime};

use mailgate_config::RoutingTable;
use mailgate_health::{BackendStatus, HealthState, ProbeResult, Protocol};

const TABLE: &str = r#"
backends:
  mail1:
    host: mail1.internal
    imap_port: 143
    max_sessions: 1400
    public_name: "Area <A>"
  mail2:
    host: 10.0.0.12
    imap_port: 143
domains:
  example.com: mail1
  example.org: mail2
  "*.example.net": mail2
default: mail1
"#;

/// Routing from YAML (panics on an invalid file: fixtures only).
pub fn routing(yaml: &str) -> RoutingTable {
    RoutingTable::parse(yaml, Path::new("routing.yaml"))
        .expect("valid routing")
        .table
}

/// Two backends: mail1 (public name with markup) and mail2 (none), a default.
pub fn table() -> RoutingTable {
    routing(TABLE)
}

/// [`table`] with each backend the other's `fallback`.
pub fn fallback_table() -> RoutingTable {
    let yaml = TABLE
        .replace(
            "    public_name: \"Area <A>\"\n",
            "    public_name: \"Area <A>\"\n    fallback: mail2\n",
        )
        .replace(
            "    host: 10.0.0.12\n",
            "    host: 10.0.0.12\n    fallback: mail1\n",
        );
    let t = routing(&yaml);
    assert_eq!(
        t.backend("mail1").and_then(|b| b.fallback.as_deref()),
        Some("mail2")
    );
    assert_eq!(
        t.backend("mail2").and_then(|b| b.fallback.as_deref()),
        Some("mail1")
    );
    t
}

/// [`table`] without `default:`.
pub fn table_without_default() -> RoutingTable {
    routing(&TABLE.replace("default: mail1\n", ""))
}

/// `status(name, Down)` that the blast-radius guard keeps admitted.
pub fn down_suppressed(name: &str) -> BackendStatus {
    BackendStatus {
        down_suppressed: true,
        admitting: true,
        ..status(name, HealthState::Down)
    }
}

/// A backend status in `state`, with a probe and a transition.
pub fn status(name: &str, state: HealthState) -> BackendStatus {
    BackendStatus {
        name: name.into(),
        state,
        down_suppressed: false,
        drained: false,
        drains: Default::default(),
        admitting: state != HealthState::Down,
        sessions: 12,
        logins_in_flight: 1,
        max_sessions: Some(1400),
        max_logins_in_flight: None,
        admit_share: 1.0,
        latency: Some(Duration::from_millis(8)),
        last_probe: Some(ProbeResult {
            protocol: Protocol::Imap,
            ok: state != HealthState::Down,
            latency: Duration::from_micros(4500),
            duration: Duration::from_millis(9),
            at: SystemTime::now(),
            error: (state == HealthState::Down).then(|| "greeting: timed out after 2s".into()),
        }),
        probes: Vec::new(),
        last_transition: Some((
            SystemTime::now(),
            "3 probe failures: greeting timed out".into(),
        )),
        since: SystemTime::now(),
    }
}
