//! Admission, budgets, drain, the blast-radius guard and the status snapshot.

use std::time::Duration;

use super::*;
use crate::probe::{ProbeError, ProbeOutcome, ProbeStep};
use crate::settings::{HealthSettings, Protocol};
use crate::view::BackendSpec;

fn spec(name: &str, max_sessions: Option<u32>, max_logins: Option<u32>) -> BackendSpec {
    BackendSpec {
        name: name.into(),
        max_sessions,
        max_logins_in_flight: max_logins,
        drain: None,
    }
}

fn view(names: &[&str]) -> HealthView {
    let v = HealthView::new(HealthSettings::default());
    v.set_backends(names.iter().map(|n| BackendSpec::new(*n)));
    v
}

fn fail(v: &HealthView, backend: &str, times: usize, now: Instant) {
    let outcome = ProbeOutcome::failed(
        ProbeError::timeout(ProbeStep::Login, Duration::from_secs(3)),
        Duration::from_secs(3),
    );
    for _ in 0..times {
        v.record_probe(backend, Protocol::Imap, &outcome, now);
    }
}

fn succeed(v: &HealthView, backend: &str, times: usize, now: Instant) {
    let outcome = ProbeOutcome::ok(Duration::from_millis(3), Duration::from_millis(10));
    for _ in 0..times {
        v.record_probe(backend, Protocol::Imap, &outcome, now);
    }
}

fn reason(r: Result<LoginPermit, Refusal>) -> Option<RefusalReason> {
    r.err().map(|e| e.reason)
}

#[test]
fn budget_holds_five_and_refuses_the_sixth() {
    let v = HealthView::new(HealthSettings::default());
    v.set_backends([spec("mail1", Some(5), None)]);
    let mut sessions = Vec::new();
    for _ in 0..5 {
        let permit = v.admit("mail1").expect("under budget");
        sessions.push(permit.into_session());
    }
    assert_eq!(reason(v.admit("mail1")), Some(RefusalReason::OverBudget));
    sessions.pop();
    let again = v.admit("mail1").expect("a slot was freed");
    assert_eq!(again.backend(), "mail1");
    let st = &v.snapshot()[0];
    assert_eq!((st.sessions, st.logins_in_flight), (4, 1));
}

#[test]
fn logins_in_flight_count_against_both_limits() {
    let v = HealthView::new(HealthSettings::default());
    v.set_backends([spec("mail1", Some(3), Some(2))]);
    let a = v.admit("mail1").expect("first");
    let b = v.admit("mail1").expect("second");
    assert_eq!(
        reason(v.admit("mail1")),
        Some(RefusalReason::LoginsInFlight)
    );
    let s = a.into_session();
    let c = v.admit("mail1").expect("one login finished");
    assert_eq!(
        reason(v.admit("mail1")),
        Some(RefusalReason::LoginsInFlight)
    );
    drop(b);
    let d = v
        .admit("mail1")
        .expect("session + 1 in flight < 3")
        .into_session();
    assert_eq!(reason(v.admit("mail1")), Some(RefusalReason::OverBudget));
    drop((s, c, d));
    let st = &v.snapshot()[0];
    assert_eq!((st.sessions, st.logins_in_flight), (0, 0));
}

#[test]
fn dropping_guards_on_every_path_releases_counts() {
    let v = HealthView::new(HealthSettings::default());
    v.set_backends([spec("mail1", Some(2), None)]);
    fn login(v: &HealthView, fail: bool) -> Result<SessionGuard, &'static str> {
        let permit = v.admit("mail1").map_err(|_| "refused")?;
        if fail {
            return Err("backend said NO"); // early return: the permit is released
        }
        Ok(permit.into_session())
    }
    for _ in 0..10 {
        assert!(login(&v, true).is_err());
    }
    let s1 = login(&v, false).expect("admitted");
    let s2 = login(&v, false).expect("admitted");
    assert_eq!(login(&v, false).err(), Some("refused"));
    drop(s1);
    drop(s2);
    let st = &v.snapshot()[0];
    assert_eq!((st.sessions, st.logins_in_flight), (0, 0));
}

#[test]
fn drain_refuses_new_logins_and_keeps_sessions() {
    let v = view(&["mail1"]);
    let session = v.admit("mail1").expect("up").into_session();
    assert!(v.drain("mail1"));
    assert_eq!(reason(v.admit("mail1")), Some(RefusalReason::Drained));
    assert_eq!(session.backend(), "mail1");
    let st = &v.snapshot()[0];
    assert!(st.drained && !st.admitting);
    assert_eq!(st.sessions, 1);
    assert!(v.undrain("mail1"));
    assert!(v.admit("mail1").is_ok());
    assert!(!v.drain("nope"));
}

#[test]
fn unknown_backend_is_refused() {
    let v = view(&["mail1"]);
    let r = v.admit("mail9").expect_err("unknown");
    assert_eq!(r.reason, RefusalReason::Unknown);
    assert_eq!(
        r.to_string(),
        "backend mail9 does not admit logins: unknown_backend"
    );
}

#[test]
fn down_backend_is_refused_until_it_rises() {
    let v = view(&["mail1", "mail2"]);
    let now = Instant::now();
    fail(&v, "mail1", 3, now);
    assert_eq!(reason(v.admit("mail1")), Some(RefusalReason::Down));
    assert!(v.admit("mail2").is_ok(), "other backends keep working");
    let st = &v.snapshot()[0];
    assert_eq!(st.state, HealthState::Down);
    assert!(!st.down_suppressed && !st.admitting);
    assert_eq!(
        st.last_transition.as_ref().map(|(_, r)| r.as_str()),
        Some("3 consecutive imap probe failures, last: login timed out after 3s")
    );
    assert_eq!(
        st.last_probe.as_ref().and_then(|p| p.error.as_deref()),
        Some("login timed out after 3s")
    );
    succeed(&v, "mail1", 2, now);
    assert_eq!(v.snapshot()[0].state, HealthState::Up);
}

#[test]
fn blast_radius_guard_keeps_half_the_platform_admitted() {
    let v = view(&["a", "b", "c", "d"]);
    let t0 = Instant::now();
    for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
        fail(&v, name, 3, t0 + Duration::from_secs(i as u64));
    }
    let st = v.snapshot();
    assert!(st.iter().all(|s| s.state == HealthState::Down));
    let refused: Vec<&str> = st
        .iter()
        .filter(|s| !s.down_suppressed)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(refused, ["a", "b"], "the first two to fail are enforced");
    assert!(v.admit("c").is_ok() && v.admit("d").is_ok());
    assert_eq!(reason(v.admit("a")), Some(RefusalReason::Down));
    // a comes back: the longest-down suppressed backend (c) is enforced now.
    succeed(&v, "a", 2, t0 + Duration::from_secs(10));
    let st = v.snapshot();
    let refused: Vec<&str> = st
        .iter()
        .filter(|s| s.state == HealthState::Down && !s.down_suppressed)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(refused, ["b", "c"]);
    // Operator drains are not limited by the guard.
    for name in ["a", "b", "c", "d"] {
        v.drain(name);
    }
    assert!(v.snapshot().iter().all(|s| !s.admitting));
}

#[test]
fn a_single_backend_is_never_auto_refused_at_share_one_half() {
    let v = view(&["only"]);
    fail(&v, "only", 5, Instant::now());
    let st = &v.snapshot()[0];
    assert!(st.state == HealthState::Down && st.down_suppressed && st.admitting);
    assert!(v.admit("only").is_ok());
    // Raising the share lets it go down.
    v.set_settings(HealthSettings {
        max_auto_down_share: 1.0,
        ..HealthSettings::default()
    });
    assert_eq!(reason(v.admit("only")), Some(RefusalReason::Down));
}

#[test]
fn slow_start_admits_a_growing_share() {
    let v = view(&["mail1", "mail2"]);
    let t0 = Instant::now();
    fail(&v, "mail1", 3, t0);
    succeed(&v, "mail1", 2, t0);
    let admitted_in = |at: Instant| {
        (0..100)
            .filter_map(|_| v.admit_at("mail1", at).ok())
            .count()
    };
    let early = admitted_in(t0);
    let mid = admitted_in(t0 + Duration::from_secs(15));
    let late = admitted_in(t0 + Duration::from_secs(31));
    assert!((9..=12).contains(&early), "early {early}");
    assert!(mid > early && mid < 100, "mid {mid}");
    assert_eq!(late, 100);
}

/// `mail1` of a fresh view with `spec`, taken down and back up at `t0`.
fn recovered(spec: BackendSpec, settings: HealthSettings, t0: Instant) -> HealthView {
    let v = HealthView::new(settings);
    v.set_backends([spec, BackendSpec::new("mail2")]);
    fail(&v, "mail1", 3, t0);
    succeed(&v, "mail1", 2, t0);
    v
}

/// Attempts at `at`, keeping every permit (logins in flight): (admitted, refusals).
fn storm(v: &HealthView, at: Instant, attempts: usize) -> (Vec<LoginPermit>, Vec<RefusalReason>) {
    let (mut held, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..attempts {
        match v.admit_at("mail1", at) {
            Ok(p) => held.push(p),
            Err(e) => refused.push(e.reason),
        }
    }
    (held, refused)
}

#[test]
fn slow_start_bounds_logins_in_flight_not_only_their_share() {
    // A storm of 2,000 attempts in one second: the share alone would admit 200 at once.
    let t0 = Instant::now();
    let v = recovered(BackendSpec::new("mail1"), HealthSettings::default(), t0);
    let (held, refused) = storm(&v, t0, 2000);
    assert_eq!(held.len(), 10, "10 % of slow_start_logins_in_flight (100)");
    assert!(refused.iter().all(|r| *r == RefusalReason::SlowStart));
    // Verdicts free slots: the next attempts take them, up to the cap again.
    let mut held = held;
    held.truncate(4);
    let at = t0;
    let (more, _) = storm(&v, at, 100);
    assert_eq!(held.len() + more.len(), 10);
    // Sessions do not count against this cap, only logins waiting for a verdict.
    let sessions: Vec<SessionGuard> = held
        .into_iter()
        .chain(more)
        .map(|p| p.into_session())
        .collect();
    let (again, _) = storm(&v, at, 100);
    assert_eq!(again.len(), 10);
    drop(again);
    // Halfway: 55 % of 100.
    let (mid, _) = storm(&v, t0 + Duration::from_secs(15), 2000);
    assert_eq!(mid.len(), 55);
    drop(mid);
    // Slow start over: no cap of its own.
    let (late, _) = storm(&v, t0 + Duration::from_secs(31), 2000);
    assert_eq!(late.len(), 2000);
    assert_eq!(
        v.admit("mail2")
            .map(|p| p.backend().to_string())
            .ok()
            .as_deref(),
        Some("mail2")
    );
    drop(sessions);
}

#[test]
fn slow_start_ramps_the_backends_own_limits() {
    let t0 = Instant::now();
    // max_logins_in_flight replaces the health-wide default: 10 % of 40.
    let v = recovered(spec("mail1", None, Some(40)), HealthSettings::default(), t0);
    assert_eq!(storm(&v, t0, 1000).0.len(), 4);
    // The max_sessions budget ramps too (HAProxy's slowstart does it to maxconn): 10 % of
    // 200, counting sessions and logins in flight; the full budget stays `over_budget`.
    let only_budget = HealthSettings {
        slow_start_logins_in_flight: 0,
        ..HealthSettings::default()
    };
    let v = recovered(spec("mail1", Some(200), None), only_budget, t0);
    let into_sessions = |at: Instant| -> Vec<SessionGuard> {
        let (held, refused) = storm(&v, at, 1000);
        assert!(refused.iter().all(|r| *r == RefusalReason::SlowStart));
        held.into_iter().map(|p| p.into_session()).collect()
    };
    let mut sessions = into_sessions(t0);
    assert_eq!(sessions.len(), 20);
    sessions.extend(into_sessions(t0 + Duration::from_secs(15)));
    assert_eq!(sessions.len(), 110);
    let (rest, refused) = storm(&v, t0 + Duration::from_secs(31), 1000);
    assert_eq!(rest.len() + sessions.len(), 200);
    assert_eq!(refused.first(), Some(&RefusalReason::OverBudget));
}

#[test]
fn slow_start_logins_in_flight_zero_leaves_only_the_share() {
    let t0 = Instant::now();
    let settings = HealthSettings {
        slow_start_logins_in_flight: 0,
        ..HealthSettings::default()
    };
    let v = recovered(BackendSpec::new("mail1"), settings, t0);
    assert_eq!(storm(&v, t0, 2000).0.len(), 200);
}

#[test]
fn fallback_is_used_while_the_primary_refuses() {
    let v = view(&["primary", "replica"]);
    v.drain("primary");
    let p = v
        .admit_with_fallback("primary", Some("replica"))
        .expect("replica admits");
    assert_eq!(p.backend(), "replica");
    v.drain("replica");
    let r = v
        .admit_with_fallback("primary", Some("replica"))
        .expect_err("both drained");
    assert_eq!(
        (r.backend.as_str(), r.reason),
        ("primary", RefusalReason::Drained)
    );
    v.undrain("primary");
    let p = v
        .admit_with_fallback("primary", Some("replica"))
        .expect("primary");
    assert_eq!(p.backend(), "primary");
}

#[test]
fn reconfigure_keeps_state_and_live_guards_survive_removal() {
    let v = view(&["mail1", "mail2"]);
    let s = v.admit("mail1").expect("up").into_session();
    v.drain("mail2");
    v.set_backends([spec("mail1", Some(1), None), spec("mail2", None, None)]);
    assert_eq!(reason(v.admit("mail1")), Some(RefusalReason::OverBudget));
    assert!(v.snapshot()[1].drained, "drain survives a reload");
    v.set_backends([spec("mail2", None, None)]);
    assert_eq!(v.backends(), ["mail2"]);
    assert_eq!(reason(v.admit("mail1")), Some(RefusalReason::Unknown));
    drop(s); // releases into the removed backend without harm
}

#[test]
fn concurrent_admissions_never_exceed_the_budget() {
    let v = HealthView::new(HealthSettings::default());
    v.set_backends([spec("mail1", Some(8), None)]);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let v = v.clone();
            let peak = peak.clone();
            scope.spawn(move || {
                for _ in 0..2000 {
                    if let Ok(p) = v.admit("mail1") {
                        let s = p.into_session();
                        let st = &v.snapshot()[0];
                        peak.fetch_max(st.sessions + st.logins_in_flight, Ordering::Relaxed);
                        drop(s);
                    }
                }
            });
        }
    });
    assert!(peak.load(Ordering::Relaxed) <= 8);
    let st = &v.snapshot()[0];
    assert_eq!((st.sessions, st.logins_in_flight), (0, 0));
}

#[test]
fn refusal_labels_are_stable() {
    let labels: Vec<&str> = RefusalReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        labels,
        [
            "down",
            "drained",
            "over_budget",
            "logins_in_flight",
            "slow_start",
            "unknown_backend"
        ]
    );
}
