use std::time::SystemTime;

use mailgate_health::HealthState;

use super::*;
use crate::admin::testutil::{
    down_suppressed, fallback_table, status, table, table_without_default,
};

fn page(statuses: &[BackendStatus], domain: Option<&str>) -> String {
    page_with(&table(), statuses, domain)
}

fn page_with(t: &RoutingTable, statuses: &[BackendStatus], domain: Option<&str>) -> String {
    render(&PageInput {
        statuses,
        table: t,
        domain,
        show_addresses: false,
        domain_check: true,
        refresh_secs: 30,
        now: SystemTime::now(),
    })
}

/// The `<tr>` of the backend shown as `area`.
fn row<'a>(html: &'a str, area: &str) -> &'a str {
    let at = html
        .find(&format!("<td><b>{area}</b>"))
        .unwrap_or_else(|| panic!("no row for {area} in {html}"));
    let start = html[..at].rfind("<tr").unwrap_or(at);
    let end = html[at..].find("</tr>").map_or(html.len(), |e| at + e);
    &html[start..end]
}

/// The domain check's answer element.
fn answer(html: &str) -> &str {
    let at = html.find("id=\"answer\"").expect("an answer");
    let start = html[..at].rfind("<div").unwrap_or(at);
    let end = html[at..].find("</div>").map_or(html.len(), |e| at + e);
    &html[start..end]
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
    assert!(html.contains("pill maint\">Maintenance — not accepting logins"));
    assert!(html.contains("in maintenance and do not accept logins"));
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
        domain_check: true,
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

    // Without a route at all the domain is unknown.
    let unknown = page_with(&table_without_default(), &statuses, Some("nowhere.invalid"));
    assert!(unknown.contains("We do not know the domain <b>nowhere.invalid</b>"));
    assert!(!unknown.contains("served by"));
    assert!(unknown.contains("answer unknown"));
}

#[test]
fn down_suppressed_backend_is_shown_accepting_logins() {
    let statuses = [status("mail1", HealthState::Up), down_suppressed("mail2")];
    let html = page(&statuses, Some("carol@sub.example.net"));
    let r = row(&html, "mail2");
    assert!(r.contains("class=\"backend slow\""), "{r}");
    assert!(
        r.contains("pill slow\">Accepting logins — checking a problem"),
        "{r}"
    );
    assert!(!html.contains("Not accepting logins"), "{html}");
    // The banner does not tell customers they cannot log in.
    assert!(!html.contains("cannot log in"), "{html}");
    assert!(html.contains(
        "banner slow\" id=\"summary\">Some mail services have problems; logins are still accepted."
    ));
    let a = answer(&html);
    assert!(a.contains("answer slow"), "{a}");
    assert!(
        a.contains("served by <b>mail2</b>: Accepting logins — checking a problem."),
        "{a}"
    );
    assert!(a.contains("Logins are accepted"), "{a}");
    assert!(!a.contains("refused"), "{a}");
    // Nothing of the guard's internals reaches customers.
    assert!(!html.contains("max_auto_down_share") && !html.contains("suppressed"));
}

#[test]
fn enforced_down_still_says_not_accepting() {
    let statuses = [
        status("mail1", HealthState::Up),
        status("mail2", HealthState::Down),
    ];
    let html = page(&statuses, Some("example.org"));
    assert!(
        row(&html, "mail2").contains("pill down\">Not accepting logins — we are working on it")
    );
    assert!(answer(&html).contains("answer down"));
    assert!(answer(&html).contains("Logins are refused for now"));
}

#[test]
fn fallback_in_use_is_shown_as_such() {
    let t = fallback_table();
    // mail2 down (enforced): its fallback mail1 ("Area <A>") takes its logins.
    let statuses = [
        status("mail1", HealthState::Up),
        status("mail2", HealthState::Down),
    ];
    let html = page_with(&t, &statuses, Some("example.org"));
    let r = row(&html, "mail2");
    assert!(r.contains("class=\"backend backup\""), "{r}");
    assert!(
        r.contains("pill backup\">Accepting logins via backup"),
        "{r}"
    );
    assert!(
        r.contains("unavailable; served by <b>Area &lt;A&gt;</b>"),
        "{r}"
    );
    assert!(!html.contains("Not accepting logins"), "{html}");
    assert!(!html.contains("cannot log in"), "{html}");
    assert!(html.contains("banner backup\""), "{html}");
    let a = answer(&html);
    assert!(a.contains("answer backup"), "{a}");
    assert!(
        a.contains(
            "Mail for <b>example.org</b> is served by <b>mail2</b>: Accepting logins via \
                    backup. Logins are accepted: while it is unavailable, <b>Area &lt;A&gt;</b> \
                    serves them."
        ),
        "{a}"
    );
    // The fallback's own row is plain.
    assert!(row(&html, "Area &lt;A&gt;").contains("pill ok\">Operating normally"));
    // Never an internal host.
    assert!(!html.contains("mail1.internal") && !html.contains("10.0.0.12"));

    // mail1 drained: mail2 (no public name, so its name as everywhere on the page).
    let mut drained = status("mail1", HealthState::Up);
    drained.drained = true;
    let html = page_with(
        &t,
        &[drained, status("mail2", HealthState::Up)],
        Some("example.com"),
    );
    assert!(row(&html, "Area &lt;A&gt;").contains("in maintenance; served by <b>mail2</b>"));
    assert!(answer(&html).contains("while it is in maintenance, <b>mail2</b> serves them."));
}

#[test]
fn no_fallback_claim_when_the_fallback_does_not_admit_either() {
    let t = fallback_table();
    let mut drained = status("mail1", HealthState::Up);
    drained.drained = true;
    let statuses = [drained, status("mail2", HealthState::Down)];
    let html = page_with(&t, &statuses, Some("example.com"));
    assert!(
        row(&html, "Area &lt;A&gt;").contains("pill maint\">Maintenance — not accepting logins")
    );
    assert!(row(&html, "mail2").contains("pill down\">Not accepting logins"));
    assert!(!html.contains("via backup"), "{html}");
    assert!(answer(&html).contains("answer maint"));
    assert!(html.contains("cannot log in"));

    // A fallback at its budget does not take logins either.
    let mut full = status("mail2", HealthState::Up);
    full.max_sessions = Some(12);
    full.logins_in_flight = 0;
    let mut drained = status("mail1", HealthState::Up);
    drained.drained = true;
    let html = page_with(&t, &[drained, full], None);
    assert!(!html.contains("via backup"), "{html}");
}

#[test]
fn backend_at_its_budget_is_full_or_uses_its_fallback() {
    // 12 sessions + 1 login in flight against a budget of 13.
    let mut full = status("mail1", HealthState::Up);
    full.max_sessions = Some(13);
    let statuses = [full, status("mail2", HealthState::Up)];
    let html = page(&statuses, Some("example.com"));
    assert!(row(&html, "Area &lt;A&gt;").contains("pill busy\">Full — new logins turned away"));
    assert!(html.contains("banner busy\""));
    assert!(answer(&html).contains("new logins are turned away until others end"));

    let html = page_with(&fallback_table(), &statuses, Some("example.com"));
    assert!(row(&html, "Area &lt;A&gt;").contains("full; served by <b>mail2</b>"));

    // One below the budget is plainly up.
    let mut almost = status("mail1", HealthState::Up);
    almost.max_sessions = Some(14);
    let html = page(&[almost, status("mail2", HealthState::Up)], None);
    assert!(row(&html, "Area &lt;A&gt;").contains("pill ok\">Operating normally"));
    assert!(html.contains("All mail services are operating normally."));
}

#[test]
fn slow_start_says_recovering() {
    let mut ramp = status("mail2", HealthState::Up);
    ramp.admit_share = 0.4;
    let statuses = [status("mail1", HealthState::Up), ramp];
    let html = page(&statuses, None);
    assert!(row(&html, "mail2").contains("pill slow\">Recovering — some logins turned away"));
    let html = page_with(&fallback_table(), &statuses, None);
    let r = row(&html, "mail2");
    assert!(
        r.contains("pill slow\">Recovering — accepting logins"),
        "{r}"
    );
    assert!(r.contains("some served by <b>Area &lt;A&gt;</b>"), "{r}");
}

#[test]
fn default_routed_domain_gets_the_default_backends_state() {
    let statuses = [
        status("mail1", HealthState::Up),
        status("mail2", HealthState::Up),
    ];
    let html = page(&statuses, Some("someone@nowhere.invalid"));
    let a = answer(&html);
    assert!(a.contains("answer ok"), "{a}");
    assert!(
        a.contains(
            "We have no entry of our own for <b>nowhere.invalid</b>; logins for it go to \
                    our default service area, <b>Area &lt;A&gt;</b>: Operating normally. It is \
                    healthy."
        ),
        "{a}"
    );
    assert!(!a.contains("We do not know"), "{a}");

    // ... including when the default is down but kept admitted, or down for real.
    let statuses = [down_suppressed("mail1"), status("mail2", HealthState::Up)];
    let a = page(&statuses, Some("nowhere.invalid"));
    assert!(answer(&a).contains("answer slow") && answer(&a).contains("Logins are accepted"));
    let statuses = [
        status("mail1", HealthState::Down),
        status("mail2", HealthState::Up),
    ];
    let a = page(&statuses, Some("nowhere.invalid"));
    assert!(answer(&a).contains("answer down") && answer(&a).contains("Logins are refused"));

    // An exact or wildcard rule still wins over the default.
    let statuses = [
        status("mail1", HealthState::Up),
        status("mail2", HealthState::Degraded),
    ];
    let a = page(&statuses, Some("deep.sub.example.net"));
    assert!(
        answer(&a)
            .contains("Mail for <b>deep.sub.example.net</b> is served by <b>mail2</b>: Slow.")
    );
}

#[test]
fn verdicts_follow_admission() {
    use availability::{Cause, Verdict, assess};
    let t = fallback_table();
    let up = status("mail2", HealthState::Up);
    let check = |s: &BackendStatus, other: &BackendStatus, table: &RoutingTable| {
        assess(s, &[s.clone(), other.clone()], table)
    };
    assert_eq!(
        check(&status("mail1", HealthState::Up), &up, &table()),
        Verdict::Normal
    );
    assert_eq!(
        check(&status("mail1", HealthState::Degraded), &up, &table()),
        Verdict::Slow
    );
    assert_eq!(
        check(&down_suppressed("mail1"), &up, &t),
        Verdict::DownAdmitted
    );
    // Drained beats down; a drained down_suppressed backend admits nothing.
    let mut both = down_suppressed("mail1");
    both.drained = true;
    both.admitting = false;
    assert_eq!(
        check(&both, &up, &table()),
        Verdict::Refused {
            cause: Cause::Drained,
            fallback: None
        }
    );
    assert_eq!(
        check(&both, &up, &t),
        Verdict::Fallback {
            cause: Cause::Drained,
            fallback: "mail2".into()
        }
    );
    // A down_suppressed fallback admits, so it takes the logins.
    assert_eq!(
        check(
            &status("mail1", HealthState::Down),
            &down_suppressed("mail2"),
            &t
        ),
        Verdict::Fallback {
            cause: Cause::Down,
            fallback: "mail2".into()
        }
    );
    assert_eq!(
        check(
            &status("mail1", HealthState::Down),
            &status("mail2", HealthState::Down),
            &t
        ),
        Verdict::Refused {
            cause: Cause::Down,
            fallback: Some("mail2".into())
        }
    );
    // A fallback the health view does not know (yet) is not claimed.
    assert_eq!(
        assess(
            &status("mail1", HealthState::Down),
            &[status("mail1", HealthState::Down)],
            &t
        ),
        Verdict::Refused {
            cause: Cause::Down,
            fallback: Some("mail2".into())
        }
    );
    assert!(
        !Verdict::Refused {
            cause: Cause::AtBudget,
            fallback: None
        }
        .accepts_logins()
    );
    assert!(Verdict::DownAdmitted.accepts_logins());
}

#[test]
fn domain_check_escapes_hostile_input() {
    let statuses = [status("mail1", HealthState::Up)];
    let html = page(&statuses, Some("\"><script>alert(1)</script>"));
    assert!(!html.contains("<script>"));
    assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""));
    assert!(html.contains("does not look like a domain name"));
}

#[test]
fn a_drain_in_the_routing_file_shows_its_reason() {
    use crate::admin::testutil::routing;
    let t = routing(
        &r#"
backends:
  mail1:
    host: mail1.internal
    imap_port: 143
    public_name: "Area <A>"
    drain: true
    drain_reason: "disks <replaced> until 14:00"
  mail2:
    host: 10.0.0.12
    imap_port: 143
domains:
  example.com: mail1
  example.org: mail2
"#[1..],
    );
    let mut drained = status("mail1", HealthState::Up);
    drained.drained = true;
    let html = page_with(&t, &[drained, status("mail2", HealthState::Up)], None);
    let r = row(&html, "Area &lt;A&gt;");
    assert!(r.contains("pill maint\">Maintenance"), "{r}");
    assert!(r.contains("disks &lt;replaced&gt; until 14:00"), "{r}");
    // A drain through the admin API only (the file says nothing): no reason shown.
    let mut local = status("mail1", HealthState::Up);
    local.drained = true;
    let html = page_with(&table(), &[local, status("mail2", HealthState::Up)], None);
    let r = row(&html, "Area &lt;A&gt;");
    assert!(r.contains("pill maint\">Maintenance"), "{r}");
    assert!(!r.contains("</span><div class=\"muted\">"), "{r}");
}
