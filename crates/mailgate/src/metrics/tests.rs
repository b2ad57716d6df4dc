use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use mailgate_health::{BackendStatus, HealthState, RefusalReason};
use mailgate_proto::Protocol;

use super::*;
use crate::admin::StateGauges;
use crate::admission::LoginMetrics;
use crate::endpoint::ListenerKind;
use crate::logging::LogMetrics;
use crate::prober::ProbeMetrics;
use crate::reload::ConfigMetrics;
use crate::session::SessionMetrics;

fn status(name: &str, state: HealthState, drained: bool) -> BackendStatus {
    BackendStatus {
        name: name.into(),
        state,
        down_suppressed: false,
        drained,
        drains: Default::default(),
        admitting: state != HealthState::Down && !drained,
        sessions: 0,
        logins_in_flight: 2,
        max_sessions: Some(100),
        max_logins_in_flight: None,
        admit_share: 1.0,
        latency: None,
        last_probe: None,
        probes: Vec::new(),
        last_transition: None,
        since: SystemTime::now(),
    }
}

fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

struct All {
    metrics: Metrics,
    gauges: Arc<StateGauges>,
    logins: Arc<LoginMetrics>,
    sessions: Arc<SessionMetrics>,
    config: Arc<ConfigMetrics>,
    probes: Arc<ProbeMetrics>,
}

fn all() -> All {
    let gauges = Arc::new(StateGauges::default());
    let logins = Arc::new(LoginMetrics::default());
    let sessions = Arc::new(SessionMetrics::default());
    let config = Arc::new(ConfigMetrics::default());
    let probes = Arc::new(ProbeMetrics::default());
    let metrics = Metrics::build(vec![
        gauges.clone(),
        logins.clone(),
        probes.clone(),
        sessions.clone(),
        config.clone(),
        Arc::new(crate::capabilities::CapabilityMetrics::default()),
        Arc::new(crate::move_plan::guard::MoveGuard::default()),
        Arc::new(LogMetrics),
    ]);
    All {
        metrics,
        gauges,
        logins,
        sessions,
        config,
        probes,
    }
}

fn scrape(a: &All, statuses: &[BackendStatus], cert: Option<i64>) -> String {
    let names: BTreeSet<String> = statuses.iter().map(|s| s.name.clone()).collect();
    a.metrics
        .encode_for(names, || a.gauges.refresh(statuses, cert))
}

#[test]
fn state_gauges_follow_the_health_view() {
    let a = all();
    a.logins.sync_backends(&crate::admin::testutil::table());
    let text = scrape(
        &a,
        &[
            status("mail1", HealthState::Up, false),
            status("mail2", HealthState::Down, true),
        ],
        Some(1_900_000_000),
    );
    assert_eq!(
        line(&text, "mailgate_backend_up{backend=\"mail1\"}"),
        Some("mailgate_backend_up{backend=\"mail1\"} 1")
    );
    assert_eq!(
        line(&text, "mailgate_backend_up{backend=\"mail2\"}"),
        Some("mailgate_backend_up{backend=\"mail2\"} 0")
    );
    assert!(text.contains("mailgate_backend_state{backend=\"mail2\",state=\"down\"} 1"));
    assert!(text.contains("mailgate_backend_state{backend=\"mail2\",state=\"up\"} 0"));
    assert!(text.contains("mailgate_backend_drained{backend=\"mail2\"} 1"));
    assert!(text.contains("mailgate_backend_max_sessions{backend=\"mail1\"} 100"));
    assert!(text.contains("mailgate_backend_logins_in_flight{backend=\"mail1\"} 2"));
    // Every backend of the table exports its session gauge, 0 included.
    assert!(text.contains("mailgate_backend_sessions{backend=\"mail1\",protocol=\"imap\"} 0"));
    assert!(text.contains("mailgate_tls_certificate_not_after_timestamp_seconds 1900000000"));
}

#[test]
fn removed_backends_lose_their_series() {
    let a = all();
    a.logins.login("mail2", Protocol::Imap, LoginResult::Ok);
    a.logins
        .login("mail2", Protocol::Pop3, LoginResult::TempFailure);
    a.logins.refused("mail2", RefusalReason::Drained);
    a.sessions.add_bytes("mail2", 1, 2);
    a.probes.observe("mail2", 0.003);
    let both = [
        status("mail1", HealthState::Up, false),
        status("mail2", HealthState::Up, false),
    ];
    assert!(scrape(&a, &both, None).contains("backend=\"mail2\""));
    let text = scrape(&a, &both[..1], None);
    assert!(!text.contains("mail2"), "{text}");
    assert!(text.contains("backend=\"mail1\""));
}

#[test]
fn label_values_come_from_their_vocabularies() {
    let a = all();
    a.logins.sync_backends(&crate::admin::testutil::table());
    for r in LoginResult::ALL {
        a.logins.login("mail1", Protocol::Imap, r);
    }
    let text = scrape(&a, &[status("mail1", HealthState::Up, false)], None);
    for r in LoginResult::ALL {
        let want = format!(
            "mailgate_logins_total{{backend=\"mail1\",protocol=\"imap\",result=\"{}\"}} 1",
            r.as_str()
        );
        assert!(text.contains(&want), "{want}\n{text}");
    }
}

#[test]
fn every_metric_is_documented() {
    let docs = include_str!("../../../../docs/metrics.md");
    let a = all();
    a.logins.login("b", Protocol::Imap, LoginResult::Ok);
    a.logins.refused("b", RefusalReason::Down);
    a.logins.observe_duration("b", Protocol::Imap, 0.1);
    a.sessions.add_bytes("b", 1, 1);
    a.sessions.kicked();
    a.probes.observe("b", 0.1);
    a.config.record_reload(true);
    a.config.set_routes(&crate::admin::testutil::table());
    let _open = a.sessions.session_opened(ListenerKind::Imap);
    let text = scrape(&a, &[status("b", HealthState::Up, false)], None);
    let mut n = 0;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(
                docs.contains(&format!("`{name}")),
                "{name} is not in docs/metrics.md"
            );
            n += 1;
        }
    }
    assert!(n >= 18, "only {n} families");
}

#[test]
fn build_info_and_process_families_are_exported_once() {
    let a = all();
    let text = scrape(&a, &[status("b", HealthState::Up, false)], None);
    let build = line(&text, "mailgate_build_info{").expect("build_info");
    assert!(
        build.starts_with(&format!(
            "mailgate_build_info{{version=\"{}\",",
            env!("CARGO_PKG_VERSION")
        )) && build.ends_with("} 1"),
        "{build}"
    );
    assert!(build.contains("rustc=\"1."), "{build}");
    for name in [
        "process_open_fds",
        "process_max_fds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
        "process_cpu_seconds_total",
    ] {
        let l = line(&text, &format!("{name} ")).unwrap_or_else(|| panic!("{name}\n{text}"));
        let v: f64 = l[name.len() + 1..].parse().expect("value");
        assert!(v >= 0.0, "{l}");
    }
    // Two registries, one exposition: one EOF marker, at the end.
    assert_eq!(text.matches("# EOF").count(), 1);
    assert!(text.ends_with("# EOF\n"));
    // No mailgate_ prefix on the process families.
    assert!(!text.contains("mailgate_process_"));
}

#[test]
fn tls_handshake_failures_are_labelled_by_listener_and_reason() {
    let a = all();
    for r in crate::metrics::TlsFailure::ALL {
        a.sessions.tls_handshake_failed(ListenerKind::Imaps, r);
    }
    a.sessions
        .tls_handshake_failed(ListenerKind::Imap, crate::metrics::TlsFailure::Eof);
    let text = scrape(&a, &[], None);
    for r in crate::metrics::TlsFailure::ALL {
        let want = format!(
            "mailgate_tls_handshake_failures_total{{listener=\"imaps\",reason=\"{}\"}} 1",
            r.as_str()
        );
        assert!(text.contains(&want), "{want}\n{text}");
    }
    assert!(
        text.contains("mailgate_tls_handshake_failures_total{listener=\"imap\",reason=\"eof\"} 1")
    );
}
