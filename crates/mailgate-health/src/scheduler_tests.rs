//! Scheduler tests: a scripted fake prober and paused tokio time.

use std::sync::Mutex;

use super::*;
use crate::machine::HealthState;
use crate::probe::ProbeFuture;
use crate::settings::{HealthSettings, Protocol};
use crate::view::BackendSpec;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answer after this long.
    Ok(Duration),
    /// Fail after this long.
    Fail(Duration),
    /// Never answer.
    Hang,
}

#[derive(Default)]
struct FakeProber {
    script: Mutex<HashMap<String, Behaviour>>,
    calls: Mutex<Vec<(BackendTarget, Instant)>>,
}

impl FakeProber {
    fn set(&self, backend: &str, b: Behaviour) {
        self.script
            .lock()
            .expect("lock")
            .insert(backend.to_string(), b);
    }

    fn calls_to(&self, backend: &str) -> Vec<Instant> {
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .filter(|(t, _)| t.backend == backend)
            .map(|(_, at)| *at)
            .collect()
    }
}

impl Prober for FakeProber {
    fn probe(&self, target: &BackendTarget) -> ProbeFuture<'_> {
        self.calls
            .lock()
            .expect("lock")
            .push((target.clone(), Instant::now()));
        let b = self
            .script
            .lock()
            .expect("lock")
            .get(&target.backend)
            .copied()
            .unwrap_or(Behaviour::Ok(Duration::from_millis(5)));
        Box::pin(async move {
            match b {
                Behaviour::Ok(d) => {
                    tokio::time::sleep(d).await;
                    ProbeOutcome::ok(d, d)
                }
                Behaviour::Fail(d) => {
                    tokio::time::sleep(d).await;
                    ProbeOutcome::failed(ProbeError::timeout(ProbeStep::Login, d), d)
                }
                Behaviour::Hang => std::future::pending().await,
            }
        })
    }
}

fn setup(
    names: &[&str],
) -> (
    HealthView,
    Arc<FakeProber>,
    ProbeScheduler,
    CancellationToken,
) {
    let view = HealthView::new(HealthSettings {
        max_auto_down_share: 1.0,
        ..HealthSettings::default()
    });
    view.set_backends(names.iter().map(|n| BackendSpec::new(*n)));
    let prober = Arc::new(FakeProber::default());
    let targets = names
        .iter()
        .map(|n| BackendTarget::new(*n, Protocol::Imap))
        .collect();
    let shutdown = CancellationToken::new();
    let sched = ProbeScheduler::spawn(
        view.clone(),
        Arc::clone(&prober) as Arc<dyn Prober>,
        targets,
        shutdown.clone(),
    );
    (view, prober, sched, shutdown)
}

fn state(view: &HealthView, name: &str) -> Option<HealthState> {
    view.snapshot()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.state)
}

/// Advance paused time in small steps until `cond` holds; returns the time it took.
async fn until(limit: Duration, cond: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while Instant::now() - start < limit {
        if cond() {
            return Some(Instant::now() - start);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(start_paused = true)]
async fn probes_run_every_interval_with_jitter() {
    let (_view, prober, sched, shutdown) = setup(&["mail1"]);
    tokio::time::sleep(Duration::from_secs(41)).await;
    let calls = prober.calls_to("mail1");
    // 2 s interval + up to 10 % jitter, first probe within the first interval.
    assert!((18..=21).contains(&calls.len()), "{} probes", calls.len());
    for pair in calls.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_secs(2) && gap <= Duration::from_millis(2200),
            "{gap:?}"
        );
    }
    shutdown.cancel();
    sched.join().await;
}

#[tokio::test(start_paused = true)]
async fn a_deadlocked_backend_goes_down_and_comes_back() {
    let (view, prober, sched, shutdown) = setup(&["mail1", "mail2"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The login step starts to time out after 3 s.
    prober.set("mail1", Behaviour::Fail(Duration::from_secs(3)));
    let s = view.settings();
    let bound = s.interval.mul_f64(1.0 + s.jitter) * s.fall + s.timeout;
    let took = until(Duration::from_secs(60), || {
        state(&view, "mail1") == Some(HealthState::Down)
    })
    .await
    .expect("marked down");
    assert!(took <= bound, "down after {took:?} > {bound:?}");
    assert_eq!(state(&view, "mail2"), Some(HealthState::Up));
    prober.set("mail1", Behaviour::Ok(Duration::from_millis(5)));
    let took = until(Duration::from_secs(60), || {
        state(&view, "mail1") == Some(HealthState::Up)
    })
    .await
    .expect("back up");
    let bound = s.interval.mul_f64(1.0 + s.jitter) * s.rise + s.timeout;
    assert!(took <= bound, "up after {took:?} > {bound:?}");
    shutdown.cancel();
    sched.join().await;
}

#[tokio::test(start_paused = true)]
async fn a_hanging_probe_is_cut_by_the_deadline() {
    let (view, prober, sched, shutdown) = setup(&["mail1"]);
    prober.set("mail1", Behaviour::Hang);
    let deadline = view.settings().probe_deadline();
    until(deadline * 4, || {
        state(&view, "mail1") == Some(HealthState::Down)
    })
    .await
    .expect("hanging probes count as failures");
    let st = &view.snapshot()[0];
    let err = st.last_probe.as_ref().and_then(|p| p.error.clone());
    assert_eq!(err.as_deref(), Some("probe timed out after 24s"));
    shutdown.cancel();
    sched.join().await;
}

#[tokio::test(start_paused = true)]
async fn slow_responses_degrade_without_going_down() {
    let (view, prober, sched, shutdown) = setup(&["slow"]);
    prober.set("slow", Behaviour::Ok(Duration::from_secs(1)));
    let mut seen = Vec::new();
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(s) = state(&view, "slow")
            && seen.last() != Some(&s)
        {
            seen.push(s);
        }
    }
    assert_eq!(seen, [HealthState::Up, HealthState::Degraded]);
    shutdown.cancel();
    sched.join().await;
}

#[tokio::test(start_paused = true)]
async fn targets_can_change_while_running() {
    let (_view, prober, sched, shutdown) = setup(&["mail1"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    sched.set_targets(vec![
        BackendTarget::new("mail2", Protocol::Imap),
        BackendTarget::new("mail2", Protocol::Pop3),
    ]);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let before = prober.calls_to("mail1").len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        prober.calls_to("mail1").len(),
        before,
        "removed target stopped"
    );
    let mail2 = prober
        .calls
        .lock()
        .expect("lock")
        .iter()
        .filter(|(t, _)| t.backend == "mail2")
        .count();
    assert!(mail2 >= 8, "both protocols of mail2 probed: {mail2}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(1), sched.join())
        .await
        .expect("stops promptly on shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_shorter_interval_applies_without_waiting_out_the_old_one() {
    let (view, prober, sched, shutdown) = setup(&["mail1"]);
    view.set_settings(HealthSettings {
        interval: Duration::from_secs(600),
        max_auto_down_share: 1.0,
        ..HealthSettings::default()
    });
    tokio::time::sleep(Duration::from_secs(700)).await;
    let before = prober.calls_to("mail1").len();
    assert!(
        (1..=2).contains(&before),
        "{before} probes at a 600 s interval"
    );
    view.set_settings(HealthSettings {
        interval: Duration::from_secs(1),
        max_auto_down_share: 1.0,
        ..HealthSettings::default()
    });
    sched.settings_changed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = prober.calls_to("mail1").len() - before;
    // Without the nudge the next probe could be up to 660 s away.
    assert!(
        (8..=11).contains(&after),
        "{after} probes in 10 s at a 1 s interval"
    );
    assert_eq!(state(&view, "mail1"), Some(HealthState::Up), "state kept");
    shutdown.cancel();
    sched.join().await;
}
