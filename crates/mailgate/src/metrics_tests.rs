use std::time::{Duration, SystemTime};

use mailgate_health::{BackendStatus, HealthState};

use super::*;

fn status(name: &str, state: HealthState, drained: bool) -> BackendStatus {
    BackendStatus {
        name: name.into(),
        state,
        down_suppressed: false,
        drained,
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

#[test]
fn state_gauges_follow_the_health_view() {
    let m = Metrics::new();
    let text = m.encode_with_health(
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
    assert!(text.contains("mailgate_backend_sessions{backend=\"mail1\",protocol=\"imap\"} 0"));
    assert!(text.contains("mailgate_tls_certificate_not_after_timestamp_seconds 1900000000"));
}

#[test]
fn removed_backends_lose_their_series() {
    let m = Metrics::new();
    m.login("mail2", "imap", crate::metrics::LoginResult::Ok);
    m.refused("mail2", "drained");
    m.add_bytes("mail2", 1, 2);
    m.probe_duration
        .get_or_create(&BackendLabel {
            backend: "mail2".into(),
        })
        .observe(Duration::from_millis(3).as_secs_f64());
    let both = [
        status("mail1", HealthState::Up, false),
        status("mail2", HealthState::Up, false),
    ];
    assert!(
        m.encode_with_health(&both, None)
            .contains("backend=\"mail2\"")
    );
    let text = m.encode_with_health(&both[..1], None);
    assert!(!text.contains("mail2"), "{text}");
    assert!(text.contains("backend=\"mail1\""));
}

#[test]
fn every_metric_is_documented() {
    let docs = include_str!("../../../docs/metrics.md");
    let m = Metrics::new();
    m.login("b", "imap", crate::metrics::LoginResult::Ok);
    m.refused("b", "down");
    m.add_bytes("b", 1, 1);
    m.record_reload(true);
    m.set_routes(&crate::admin::testutil::table());
    let _ = m.session_opened("imap");
    m.probe_duration
        .get_or_create(&BackendLabel {
            backend: "b".into(),
        })
        .observe(0.1);
    m.login_duration
        .get_or_create(&BackendProtocol {
            backend: "b".into(),
            protocol: "imap".into(),
        })
        .observe(0.1);
    let text = m.encode_with_health(&[status("b", HealthState::Up, false)], None);
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
