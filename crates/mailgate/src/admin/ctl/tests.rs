//! `mailgate ctl` unit tests.

use super::*;

#[test]
fn admin_addresses() {
    assert_eq!(
        parse_addr("http://127.0.0.1:9143").ok().as_deref(),
        Some("127.0.0.1:9143")
    );
    assert_eq!(
        parse_addr("http://[::1]:9143/").ok().as_deref(),
        Some("[::1]:9143")
    );
    assert_eq!(
        parse_addr("localhost:1").ok().as_deref(),
        Some("localhost:1")
    );
    for bad in [
        "https://x:1",
        "http://x",
        "http://:1",
        "http://x:1/status",
        "x:99999",
    ] {
        assert!(parse_addr(bad).is_err(), "{bad}");
    }
}

#[test]
fn kick_request_encodes_parameters() {
    let (m, path) = request_line(&Command::Kick {
        backend: None,
        domain: None,
        user: Some("alice@example.com".into()),
        window: Some("30s".into()),
        dry_run: false,
        users: false,
    });
    assert_eq!(m, Method::POST);
    assert_eq!(path, "/kick?user=alice%40example.com&window=30s");
}

#[test]
fn plan_sessions_and_dry_run_requests() {
    let (m, path) = request_line(&Command::Kick {
        backend: None,
        domain: Some("example.com".into()),
        user: None,
        window: None,
        dry_run: true,
        users: true,
    });
    assert_eq!(m, Method::POST);
    assert_eq!(path, "/kick?domain=example.com&dry_run=true&users=true");
    let (m, path) = request_line(&Command::Plan {
        file: PathBuf::from("/tmp/new routing.yaml"),
        users: false,
        json: false,
    });
    assert_eq!(m, Method::POST);
    assert_eq!(path, "/routes/plan?name=%2Ftmp%2Fnew%20routing.yaml");
    let (m, path) = request_line(&Command::Sessions {
        users: true,
        json: false,
    });
    assert_eq!((m, path.as_str()), (Method::GET, "/sessions?users=true"));
}

#[test]
fn status_table_shows_state_budget_and_reason() {
    use crate::admin::status_json::{ProcessInfo, render};
    use crate::admin::testutil::{status, table};
    use mailgate_health::HealthState;
    let mut drained = status("mail1", HealthState::Up);
    drained.drained = true;
    let doc = render(
        &[drained, status("mail2", HealthState::Down)],
        &table(),
        ProcessInfo {
            ready: true,
            shutting_down: false,
            cert_not_after: None,
        },
    );
    let out = status_table(&doc);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[1].starts_with("BACKEND"));
    assert!(
        lines[2].starts_with("mail1") && lines[2].contains(" yes "),
        "{out}"
    );
    assert!(
        lines[2].contains("12/1400") && lines[2].contains("ok 4.5 ms"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("mail2") && lines[3].contains("down") && lines[3].contains("FAILED")
    );
    assert!(out.contains("reason: 3 probe failures: greeting timed out"));
    assert!(out.contains("last probe: greeting: timed out after 2s"));
    assert!(!out.contains("note:"), "{out}");
}

#[test]
fn status_table_shows_the_operator_note() {
    use crate::admin::status_json::{ProcessInfo, render};
    use crate::admin::testutil::{down_suppressed, status, table};
    use mailgate_health::HealthState;
    let doc = render(
        &[status("mail1", HealthState::Up), down_suppressed("mail2")],
        &table(),
        ProcessInfo {
            ready: true,
            shutting_down: false,
            cert_not_after: None,
        },
    );
    let out = status_table(&doc);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[3].starts_with("mail2") && lines[3].contains("down*"),
        "{out}"
    );
    assert_eq!(
        lines[4].trim(),
        "note: down, but still admitted: refusing it would exceed \
         health.max_auto_down_share (1 of 2 backends down)",
        "{out}"
    );
    assert!(out.contains("reason: 3 probe failures"), "{out}");
}

#[test]
fn debug_hides_the_token() {
    let t = Target {
        addr: "127.0.0.1:1".into(),
        token: Some("hunter2-secret".into()),
    };
    assert!(!format!("{t:?}").contains("hunter2"));
}
