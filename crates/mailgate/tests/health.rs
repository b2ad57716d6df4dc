//! Health verdicts for slow, flapping and all-failing backends (issue #5), observed through
//! the in-process `HealthView`; drain, kicks, passive signals, logins in flight, fallback.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mailgate_health::{BackendStatus, HealthState, KickSelector};
use mailgate_testkit::fake::{FakeBackend, FakeConfig, FaultMode};

// --- issue #5: health verdicts ----------------------------------------------------------

/// Follows the health state of one backend from its snapshots: the sequence of distinct
/// states seen (polling every 10 ms).
async fn watch_states(proxy: &Proxy, backend: &str, for_how_long: Duration) -> Vec<HealthState> {
    let mut seen = vec![proxy.status(backend).state];
    let end = Instant::now() + for_how_long;
    while Instant::now() < end {
        let s = proxy.status(backend).state;
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

/// A backend that answers everything after 1 s is slow, not dead: `degraded` (still
/// admitting), never `down`, and it does not flap between the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_per_response_is_degraded_not_down_and_does_not_flap() {
    let slow = fake(FaultMode::SlowResponses(Duration::from_secs(1))).await;
    let health = "    interval: 300ms\n    timeout: 3s\n    fall: 3\n    rise: 2\n    \
                  degraded_latency: 800ms";
    let proxy = Proxy::start(&[Back::imap("slow", &slow, "s.test")], health, "", false).await;
    proxy
        .wait_status("degraded", |s| s[0].state == HealthState::Degraded)
        .await;
    // Keep watching: it must stay degraded (admitting) the whole time.
    let states = watch_states(&proxy, "slow", Duration::from_secs(4)).await;
    assert_eq!(states, [HealthState::Degraded], "flapped: {states:?}");
    let st = proxy.status("slow");
    assert!(st.admitting, "{st:#?}");
    assert!(st.latency.expect("latency") >= Duration::from_millis(800));
    // A real login still goes through (slowly).
    let mut c = Client::connect(proxy.imap).await;
    assert!(c.imap_login("a1", "u@s.test").await.starts_with("a1 OK"));
    proxy.stop().await;
}

/// A backend that is healthy for 1.5 s and refuses connections for 1.5 s, alternately:
/// `fall`/`rise` hysteresis allows at most one `down` and one recovery per refusing
/// phase, never a transition per probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_backend_transitions_are_bounded_by_hysteresis() {
    let period = Duration::from_millis(1500);
    let flapping = fake(FaultMode::Flapping(period)).await;
    let health = "    interval: 150ms\n    timeout: 1s\n    fall: 3\n    rise: 2\n    \
                  slow_start: 0s\n    max_auto_down_share: 1.0";
    let proxy = Proxy::start(
        &[Back::imap("flap", &flapping, "f.test")],
        health,
        "",
        false,
    )
    .await;
    let watched = Duration::from_millis(7500); // 5 phases: ok, refuse, ok, refuse, ok
    let states = watch_states(&proxy, "flap", watched).await;
    let transitions = states.len() - 1;
    let downs = states.iter().filter(|s| **s == HealthState::Down).count();
    // Probes: ~10 per phase. Without hysteresis that would be ~25 transitions.
    assert!(downs >= 1, "never detected: {states:?}");
    assert!(downs <= 3, "more downs than refusing phases: {states:?}");
    assert!(
        transitions <= 2 * 3,
        "{transitions} transitions: {states:?}"
    );
    eprintln!("flapping {period:?} for {watched:?}: {states:?}");
    proxy.stop().await;
}

/// A broken probe account (wrong password) makes every probe of every backend fail: the
/// blast-radius guard (0.5 of 3 → 1) refuses only the first backend to go down; the
/// others stay admitted (`down_suppressed`) and real logins to them still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_failing_the_guard_holds() {
    let fakes = [
        fake(FaultMode::Normal).await,
        fake(FaultMode::Normal).await,
        fake(FaultMode::Normal).await,
    ];
    let probe = "probe:\n  user: probe@x.test\n  password_file: wrong.secret";
    let backs = [
        Back::imap("m1", &fakes[0], "one.test").with(probe),
        Back::imap("m2", &fakes[1], "two.test").with(probe),
        Back::imap("m3", &fakes[2], "three.test").with(probe),
    ];
    let health = "    interval: 150ms\n    timeout: 1s\n    fall: 3\n    max_auto_down_share: 0.5";
    let proxy = Proxy::start(&backs, health, "", false).await;
    proxy
        .wait_status("all down", |s| {
            s.iter().all(|b| b.state == HealthState::Down)
        })
        .await;
    let snap = proxy.shared.health().snapshot();
    let refused: Vec<&BackendStatus> = snap.iter().filter(|b| !b.admitting).collect();
    assert_eq!(refused.len(), 1, "{snap:#?}");
    assert_eq!(
        snap.iter().filter(|b| b.down_suppressed).count(),
        2,
        "{snap:#?}"
    );
    let last = snap[0].last_probe.as_ref().expect("probed");
    assert!(!last.ok, "{last:?}");
    for (b, domain) in snap.iter().zip(["one.test", "two.test", "three.test"]) {
        let mut c = Client::connect(proxy.imap).await;
        let reply = c.imap_login("a1", &format!("u@{domain}")).await;
        if b.admitting {
            assert!(reply.starts_with("a1 OK"), "{}: {reply:?}", b.name);
        } else {
            assert_unavailable(&reply, "a1", &b.name);
        }
    }
    proxy.stop().await;
}

// --- drain and kick ----------------------------------------------------------------------

/// Drain refuses new logins at once (without contacting the backend) and leaves spliced
/// sessions alone; undrain admits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_refuses_new_logins_and_keeps_existing_sessions() {
    let f = fake(FaultMode::Normal).await;
    let proxy = Proxy::start(&[Back::imap("b", &f, "d.test")], "", "", false).await;
    let mut old = Client::connect(proxy.imap).await;
    assert!(old.imap_login("a1", "u@d.test").await.starts_with("a1 OK"));
    assert!(proxy.shared.health().drain("b"));
    let connections = f.stats().connections;
    let mut new = Client::connect(proxy.imap).await;
    let t = Instant::now();
    let reply = new.imap_login("n1", "u@d.test").await;
    assert_unavailable(&reply, "n1", "b");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(
        f.stats().connections,
        connections,
        "a drained backend was contacted"
    );
    // The spliced session still talks to the backend.
    assert!(old.imap("a2", "NOOP").await.starts_with("a2 OK"));
    assert!(old.imap("a3", "SELECT INBOX").await.starts_with("a3 OK"));
    assert!(proxy.shared.health().undrain("b"));
    assert!(new.imap_login("n2", "u@d.test").await.starts_with("n2 OK"));
    proxy.stop().await;
}

/// A kick of 10 idle sessions over a 2 s window closes them spread out, not at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_spreads_closes_over_the_window() {
    let f = fake(FaultMode::Normal).await;
    let proxy = Proxy::start(&[Back::imap("b", &f, "d.test")], "", "", false).await;
    let mut clients = Vec::new();
    for i in 0..10 {
        let mut c = Client::connect(proxy.imap).await;
        assert!(
            c.imap_login("a1", &format!("u{i}@d.test"))
                .await
                .starts_with("a1 OK")
        );
        clients.push(c);
    }
    proxy
        .wait_status("10 sessions", |s| s[0].sessions == 10)
        .await;
    let window = Duration::from_secs(2);
    let kicked_at = Instant::now();
    let n = proxy
        .shared
        .kicks()
        .kick(&KickSelector::Backend("b".into()), window);
    assert_eq!(n, 10);
    let mut waits = Vec::new();
    for mut c in clients {
        waits.push(tokio::spawn(async move {
            c.read_to_end(Duration::from_secs(10))
                .await
                .expect("kicked session closed");
            kicked_at.elapsed()
        }));
    }
    let mut closes = Vec::new();
    for w in waits {
        closes.push(w.await.expect("join"));
    }
    closes.sort();
    eprintln!("kick over {window:?}: closes at {closes:?}");
    let spread = closes[9] - closes[0];
    // Slots of 200 ms: first close in [0, 0.2 s], last in [1.8 s, 2 s] (+ scheduling).
    assert!(spread >= Duration::from_millis(1000), "{closes:?}");
    assert!(closes[9] <= window + Duration::from_secs(2), "{closes:?}");
    // Never a burst: at most half of them within any 200 ms.
    for w in closes.windows(6) {
        assert!(w[5] - w[0] > Duration::from_millis(200), "{closes:?}");
    }
    proxy
        .wait_status("sessions released", |s| s[0].sessions == 0)
        .await;
    proxy.stop().await;
}

// --- passive signals and logins in flight -----------------------------------------------

/// Without any probe (interval 60 s), real logins that time out waiting for the greeting
/// are passive failures: after `fall` of them the backend is down and the next login is
/// refused at once instead of waiting for the timeout again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_timeouts_of_real_logins_mark_the_backend_down() {
    let f = fake(FaultMode::NoGreeting).await;
    let limits = "    backend_greeting_timeout: 300ms";
    let health = "    fall: 3\n    max_auto_down_share: 1.0";
    let proxy = Proxy::start(&[Back::imap("b", &f, "d.test")], health, limits, false).await;
    let mut c = Client::connect(proxy.imap).await;
    for i in 0..3 {
        let t = Instant::now();
        assert_unavailable(
            &c.imap_login(&format!("a{i}"), "u@d.test").await,
            &format!("a{i}"),
            "b",
        );
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
    }
    assert_eq!(proxy.status("b").state, HealthState::Down);
    let connections = f.stats().connections;
    let t = Instant::now();
    assert_unavailable(&c.imap_login("a9", "u@d.test").await, "a9", "b");
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        f.stats().connections,
        connections,
        "a down backend was contacted"
    );
    proxy.stop().await;
}

/// `max_logins_in_flight: 2`: with two logins hanging at the backend, a third is refused
/// at once; once they time out, logins are admitted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_in_flight_are_limited() {
    let f = fake(FaultMode::LoginHangs).await;
    let limits = "    backend_login_timeout: 2s";
    let back = Back::imap("b", &f, "d.test").with("max_logins_in_flight: 2");
    let proxy = Proxy::start(&[back], "    fall: 10", limits, false).await;
    let mut hanging = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect(proxy.imap).await;
        c.send("h1 LOGIN u@d.test secret").await;
        hanging.push(c);
    }
    proxy
        .wait_status("2 logins in flight", |s| s[0].logins_in_flight == 2)
        .await;
    let mut third = Client::connect(proxy.imap).await;
    let t = Instant::now();
    assert_unavailable(&third.imap_login("t1", "u@d.test").await, "t1", "b");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    for c in &mut hanging {
        assert_unavailable(&c.line().await, "h1", "b");
    }
    f.set_mode(FaultMode::Normal);
    assert!(
        third
            .imap_login("t2", "u@d.test")
            .await
            .starts_with("t2 OK")
    );
    proxy.stop().await;
}

/// A login without `@` uses `default_domain`; a kick by domain must still find its session
/// (the session registers the domain it was routed by).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_by_domain_finds_sessions_that_logged_in_without_a_domain() {
    let f = fake(FaultMode::Normal).await;
    let back = Back::imap("b", &f, "d.test");
    let proxy = Proxy::start_with_routing_extra(&[back], "default_domain: d.test\n").await;
    let mut c = Client::connect(proxy.imap).await;
    assert!(c.imap_login("a1", "bare").await.starts_with("a1 OK"));
    let n = proxy.shared.kicks().kick(
        &KickSelector::Domain("d.test".into()),
        Duration::from_millis(100),
    );
    assert_eq!(
        n, 1,
        "the session of a bare login is not found by its domain"
    );
    assert!(c.read_to_end(CAP).await.is_some(), "kicked session closed");
    proxy.stop().await;
}

// --- fallback ------------------------------------------------------------------------------

/// A backend with `fallback:` sends logins to the fallback (a replica) while it does not
/// admit, and to itself again once it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_backend_takes_logins_while_the_primary_does_not_admit() {
    let primary = FakeBackend::spawn(FakeConfig::imap("primary"))
        .await
        .expect("spawn");
    let replica = FakeBackend::spawn(FakeConfig::imap("replica"))
        .await
        .expect("spawn");
    let backs = [
        Back::imap("primary", &primary, "d.test").with("fallback: replica"),
        Back::imap("replica", &replica, "replica.test"),
    ];
    let proxy = Proxy::start(&backs, "", "", false).await;
    assert!(proxy.shared.health().drain("primary"));
    let mut c = Client::connect(proxy.imap).await;
    assert!(c.imap_login("a1", "u@d.test").await.starts_with("a1 OK"));
    assert_eq!(replica.logged_in_users(), vec!["u@d.test".to_string()]);
    assert!(primary.logged_in_users().is_empty());
    assert!(proxy.shared.health().undrain("primary"));
    let mut c2 = Client::connect(proxy.imap).await;
    assert!(c2.imap_login("a2", "v@d.test").await.starts_with("a2 OK"));
    assert_eq!(primary.logged_in_users(), vec!["v@d.test".to_string()]);
    proxy.stop().await;
}

// --- password guessing ----------------------------------------------------------------------

/// Refused passwords carry the backend's deliberate failure delay; a client guessing
/// passwords must not make a healthy backend look slow (degraded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_passwords_do_not_make_a_backend_degraded() {
    let f = FakeBackend::spawn(FakeConfig {
        auth_failure_delay: Duration::from_millis(1500),
        ..FakeConfig::imap("b")
    })
    .await
    .expect("spawn");
    let proxy = Proxy::start(&[Back::imap("b", &f, "d.test")], "", "", false).await;
    let mut guesses = Vec::new();
    for i in 0..6 {
        let addr = proxy.imap;
        guesses.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.imap("g1", &format!("LOGIN u{i}@d.test wrong")).await
        }));
    }
    for g in guesses {
        assert!(g.await.expect("guess").starts_with("g1 NO"));
    }
    assert_eq!(
        proxy.status("b").state,
        HealthState::Up,
        "{:?}",
        proxy.status("b")
    );
    // Successful logins are still sampled (the median needs `latency_min_samples`).
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(proxy.imap).await;
        assert!(c.imap_login("a1", "u@d.test").await.starts_with("a1 OK"));
        sessions.push(c);
    }
    let latency = proxy.status("b").latency.expect("sampled");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    proxy.stop().await;
}
