use std::time::SystemTime;

use mailgate_health::HealthState;

use super::*;
use crate::admin::testutil::{status, table};

fn page(statuses: &[BackendStatus], domain: Option<&str>) -> String {
    let t = table();
    render(&PageInput {
        statuses,
        table: &t,
        domain,
        show_addresses: false,
        refresh_secs: 30,
        now: SystemTime::now(),
    })
}

#[test]
fn escape_covers_markup_and_quotes() {
    assert_eq!(
        escape(r#"<script>alert("x&'y")</script>"#),
        "&lt;script&gt;alert(&quot;x&amp;&#39;y&quot;)&lt;/script&gt;"
    );
    assert_eq!(escape("a\r\nb"), "ab");
}

#[test]
fn page_is_self_contained_and_names_no_hosts() {
    let statuses = [
        status("mail1", HealthState::Up),
        status("mail2", HealthState::Down),
    ];
    let html = page(&statuses, None);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
    for forbidden in ["<script", "src=", "href=\"http", "@import", "url("] {
        assert!(!html.contains(forbidden), "page contains {forbidden}");
    }
    // Internal names and probe errors never reach the page.
    assert!(!html.contains("mail1.internal"));
    assert!(!html.contains("10.0.0.12"));
    assert!(!html.contains("timed out"));
    // public_name is shown escaped, the fallback is the backend name.
    assert!(html.contains("Area &lt;A&gt;"));
    assert!(!html.contains("Area <A>"));
    assert!(html.contains("<b>mail2</b>"));
    assert!(html.contains("Operating normally"));
    assert!(html.contains("Not accepting logins — we are working on it"));
    assert!(html.contains("12 / 1400"));
    assert!(html.contains("cannot log in"));
}

#[test]
fn drained_backend_shows_maintenance_and_degraded_shows_slow() {
    let mut drained = status("mail1", HealthState::Up);
    drained.drained = true;
    let statuses = [drained, status("mail2", HealthState::Degraded)];
    let html = page(&statuses, None);
    assert!(html.contains("pill maint\">Maintenance"));
    assert!(html.contains("pill slow\">Slow"));
}

#[test]
fn addresses_only_when_configured() {
    let t = table();
    let statuses = [status("mail1", HealthState::Up)];
    let html = render(&PageInput {
        statuses: &statuses,
        table: &t,
        domain: None,
        show_addresses: true,
        refresh_secs: 0,
        now: SystemTime::now(),
    });
    assert!(html.contains("mail1.internal:143"));
    assert!(!html.contains("http-equiv"));
}

#[test]
fn domain_check_answers_healthy_affected_and_unknown() {
    let statuses = [
        status("mail1", HealthState::Up),
        status("mail2", HealthState::Down),
    ];
    let ok = page(&statuses, Some("Example.COM"));
    assert!(ok.contains("id=\"answer\""));
    assert!(ok.contains("Mail for <b>Example.COM</b> is served by <b>Area &lt;A&gt;</b>"));
    assert!(ok.contains("It is healthy."));

    let bad = page(&statuses, Some("alice@sub.example.net"));
    assert!(bad.contains("served by <b>mail2</b>"));
    assert!(bad.contains("answer down"));
    assert!(bad.contains("Logins are refused for now"));

    // The default route does not count as knowing a domain.
    let unknown = page(&statuses, Some("nowhere.invalid"));
    assert!(unknown.contains("We do not know the domain <b>nowhere.invalid</b>"));
    assert!(!unknown.contains("served by"));
}

#[test]
fn domain_check_escapes_hostile_input() {
    let statuses = [status("mail1", HealthState::Up)];
    let html = page(&statuses, Some("\"><script>alert(1)</script>"));
    assert!(!html.contains("<script>"));
    assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""));
    assert!(html.contains("does not look like a domain name"));
}
