//! Table tests of the state machine with a fake clock.

use super::*;

const IMAP: Protocol = Protocol::Imap;
const POP3: Protocol = Protocol::Pop3;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A machine and a fake clock that advances one probe interval per step.
struct Rig {
    m: BackendHealth,
    t0: Instant,
    now: Instant,
    transitions: Vec<Transition>,
}

impl Rig {
    fn new() -> Self {
        Self::with(HealthSettings::default())
    }

    fn with(settings: HealthSettings) -> Self {
        let t0 = Instant::now();
        Rig {
            m: BackendHealth::new(settings, t0),
            t0,
            now: t0,
            transitions: Vec::new(),
        }
    }

    fn step(&mut self, event: HealthEvent) -> Option<HealthState> {
        self.now += Duration::from_secs(2);
        let t = self.m.apply(event, self.now);
        if let Some(t) = &t {
            assert_ne!(t.from, t.to, "a transition changes the state");
            self.transitions.push(t.clone());
        }
        t.map(|t| t.to)
    }

    fn ok(&mut self, p: Protocol, latency: Duration) -> Option<HealthState> {
        self.step(HealthEvent::ProbeOk {
            protocol: p,
            latency,
        })
    }

    fn fail(&mut self, p: Protocol) -> Option<HealthState> {
        self.step(HealthEvent::ProbeFailed {
            protocol: p,
            reason: "login timed out after 3s".into(),
        })
    }

    fn passive(&mut self, s: PassiveSignal) -> Option<HealthState> {
        self.step(HealthEvent::Passive(s))
    }
}

#[test]
fn fall_consecutive_failures_make_down() {
    let mut r = Rig::new();
    assert_eq!(r.fail(IMAP), None);
    assert_eq!(r.fail(IMAP), None);
    assert_eq!(r.fail(IMAP), Some(HealthState::Down));
    assert_eq!(
        r.transitions[0].reason,
        "3 consecutive imap probe failures, last: login timed out after 3s"
    );
    assert_eq!(r.m.since(), r.now);
    // Further failures do not transition again.
    assert_eq!(r.fail(IMAP), None);
}

#[test]
fn a_success_resets_the_failure_count() {
    let mut r = Rig::new();
    for _ in 0..20 {
        assert_eq!(r.fail(IMAP), None);
        assert_eq!(r.fail(IMAP), None);
        assert_eq!(r.ok(IMAP, ms(5)), None);
    }
    assert_eq!(r.m.state(), HealthState::Up);
}

#[test]
fn rise_then_slow_start_ramp() {
    let mut r = Rig::new();
    for _ in 0..3 {
        r.fail(IMAP);
    }
    assert_eq!(r.m.state(), HealthState::Down);
    assert_eq!(
        r.m.admit_share(r.now),
        1.0,
        "down is refused elsewhere, not ramped"
    );
    assert_eq!(r.ok(IMAP, ms(5)), None);
    assert_eq!(r.ok(IMAP, ms(5)), Some(HealthState::Up));
    assert_eq!(
        r.transitions[1].reason,
        "2 consecutive successful imap probes; slow start over 30s"
    );
    let at = r.now;
    let table = [(0, 0.1), (15, 0.55), (27, 0.91), (30, 1.0), (300, 1.0)];
    for (secs, want) in table {
        let got = r.m.admit_share(at + Duration::from_secs(secs));
        assert!((got - want).abs() < 1e-9, "{secs}s: {got} != {want}");
    }
}

#[test]
fn slow_start_ramps_a_limit_from_at_least_one() {
    let mut r = Rig::new();
    assert_eq!(r.m.slow_start_cap(r.now, 100), None, "never down: no ramp");
    for _ in 0..3 {
        r.fail(IMAP);
    }
    assert_eq!(
        r.m.slow_start_cap(r.now, 100),
        None,
        "down is refused elsewhere"
    );
    r.ok(IMAP, ms(5));
    r.ok(IMAP, ms(5));
    let at = r.now;
    let table = [
        (0, 100, Some(10)),
        (15, 100, Some(55)),
        (0, 5, Some(1)),
        (0, 0, Some(1)),
    ];
    for (secs, full, want) in table {
        let got = r.m.slow_start_cap(at + Duration::from_secs(secs), full);
        assert_eq!(got, want, "{secs}s of {full}");
    }
    assert_eq!(r.m.slow_start_cap(at + Duration::from_secs(30), 100), None);
}

#[test]
fn slow_start_zero_disables_the_ramp() {
    let mut r = Rig::with(HealthSettings {
        slow_start: Duration::ZERO,
        ..HealthSettings::default()
    });
    for _ in 0..3 {
        r.fail(IMAP);
    }
    r.ok(IMAP, ms(1));
    r.ok(IMAP, ms(1));
    assert_eq!(r.m.state(), HealthState::Up);
    assert_eq!(r.m.admit_share(r.now), 1.0);
    assert_eq!(
        r.transitions[1].reason,
        "2 consecutive successful imap probes"
    );
}

#[test]
fn flapping_backend_is_bounded_by_hysteresis() {
    // (pattern of probe results repeated, max transitions allowed over 120 probes)
    let table: [(&[bool], usize); 5] = [
        (&[true, false], 0),                      // every other probe fails: never down
        (&[false, false, true], 0),               // two of three fail: never down
        (&[false, false, false, true], 1),        // goes down once, one success never rises
        (&[true, false, false, false], 1),        // same, shifted
        (&[false, false, false, true, true], 48), // true flapping: one down+up per 5 probes
    ];
    for (pattern, max) in table {
        let mut r = Rig::new();
        for i in 0..120 {
            if pattern[i % pattern.len()] {
                r.ok(IMAP, ms(5));
            } else {
                r.fail(IMAP);
            }
        }
        assert!(
            r.transitions.len() <= max,
            "{pattern:?}: {} transitions > {max}",
            r.transitions.len()
        );
        // Never more than one transition per fall or rise results.
        for pair in r.transitions.windows(2) {
            assert_ne!(pair[0].to, pair[1].to);
        }
    }
}

#[test]
fn one_second_responses_are_degraded_not_down() {
    let mut r = Rig::new();
    let mut states = Vec::new();
    for _ in 0..50 {
        if let Some(s) = r.ok(IMAP, ms(1000)) {
            states.push(s);
        }
        if let Some(s) = r.passive(PassiveSignal::LoginLatency(ms(1000))) {
            states.push(s);
        }
    }
    assert_eq!(states, vec![HealthState::Degraded]);
    assert_eq!(
        r.transitions[0].reason,
        "latency 1s at or over 1s (median of 3)"
    );
}

#[test]
fn no_flapping_at_the_threshold_edge() {
    let mut r = Rig::new();
    // Latencies straddling the threshold: 0.95 s / 1.05 s alternating.
    for i in 0..200 {
        let l = if i % 2 == 0 { ms(950) } else { ms(1050) };
        r.ok(IMAP, l);
    }
    assert!(r.transitions.len() <= 1, "{:?}", r.transitions);
    // Then really fast again: recovers once, below 0.75 s.
    for _ in 0..20 {
        r.ok(IMAP, ms(800));
    }
    assert_eq!(
        r.m.state(),
        r.transitions.last().map_or(HealthState::Up, |t| t.to)
    );
    for _ in 0..20 {
        r.ok(IMAP, ms(20));
    }
    assert_eq!(r.m.state(), HealthState::Up);
    assert!(r.transitions.len() <= 2);
}

#[test]
fn a_single_slow_sample_does_not_degrade() {
    let mut r = Rig::new();
    r.ok(IMAP, ms(10));
    r.ok(IMAP, ms(10));
    assert_eq!(r.ok(IMAP, ms(5000)), None);
    assert_eq!(r.ok(IMAP, ms(10)), None);
    assert_eq!(r.m.state(), HealthState::Up);
}

#[test]
fn old_samples_leave_the_window() {
    let mut r = Rig::new();
    for _ in 0..3 {
        r.ok(IMAP, ms(2000));
    }
    assert_eq!(r.m.state(), HealthState::Degraded);
    let later = r.now + Duration::from_secs(120);
    assert_eq!(r.m.windowed_latency(later), None);
}

/// The window's edge and the median, against the definitions: samples no more than
/// `latency_window` before `now` (later ones too), the middle one of them sorted.
#[test]
fn windowed_latency_is_the_median_of_the_window() {
    let settings = HealthSettings {
        latency_samples: 64,
        latency_min_samples: 1,
        ..HealthSettings::default()
    };
    let window = settings.latency_window;
    let mut r = Rig::with(settings);
    let mut x: u64 = 7;
    for i in 0..40u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let at = r.t0 + Duration::from_secs(i * 3);
        r.m.push_latency(ms(x >> 54), at);
    }
    let last = r.t0 + Duration::from_secs(39 * 3);
    for now in [
        last,
        last + window,
        r.t0 + window,
        r.t0 + Duration::from_secs(50),
        r.t0,
    ] {
        let mut recent: Vec<Duration> =
            r.m.latencies
                .iter()
                .filter(|(at, _)| now.saturating_duration_since(*at) <= window)
                .map(|(_, d)| *d)
                .collect();
        recent.sort_unstable();
        let expected = (!recent.is_empty()).then(|| (recent[recent.len() / 2], recent.len()));
        assert_eq!(r.m.windowed_latency(now), expected, "at {:?}", now - r.t0);
    }
    // Exactly `latency_window` old: still in.
    let edge = r.t0 + window;
    assert_eq!(r.m.windowed_latency(edge).map(|(_, n)| n), Some(40));
}

#[test]
fn passive_failures_make_down_and_latency_resets_them() {
    let mut r = Rig::new();
    assert_eq!(r.passive(PassiveSignal::LoginTimeout), None);
    assert_eq!(r.passive(PassiveSignal::ConnectFailed), None);
    assert_eq!(r.passive(PassiveSignal::LoginLatency(ms(30))), None);
    assert_eq!(r.passive(PassiveSignal::GreetingTimeout), None);
    assert_eq!(r.passive(PassiveSignal::LoginTimeout), None);
    assert_eq!(
        r.passive(PassiveSignal::LoginTimeout),
        Some(HealthState::Down)
    );
    assert_eq!(
        r.transitions[0].reason,
        "3 consecutive failed real sessions, last: login timed out"
    );
}

#[test]
fn real_logins_do_not_hide_a_failing_login_probe() {
    let mut r = Rig::new();
    r.fail(IMAP);
    r.passive(PassiveSignal::LoginLatency(ms(30)));
    r.fail(IMAP);
    r.passive(PassiveSignal::LoginLatency(ms(30)));
    assert_eq!(r.fail(IMAP), Some(HealthState::Down));
}

#[test]
fn one_failing_protocol_is_enough_and_all_must_rise() {
    let mut r = Rig::new();
    for _ in 0..3 {
        r.ok(POP3, ms(5));
        r.fail(IMAP);
    }
    assert_eq!(r.m.state(), HealthState::Down);
    // POP3 keeps succeeding; IMAP has to rise too.
    for _ in 0..5 {
        assert_eq!(r.ok(POP3, ms(5)), None);
    }
    assert_eq!(r.ok(IMAP, ms(5)), None);
    assert_eq!(r.ok(IMAP, ms(5)), Some(HealthState::Up));
    assert!(
        r.transitions[1]
            .reason
            .starts_with("2 consecutive successful imap+pop3 probes")
    );
}

#[test]
fn a_forgotten_protocol_no_longer_blocks_rise() {
    let mut r = Rig::new();
    for _ in 0..3 {
        r.fail(POP3);
    }
    r.m.forget_protocol(POP3);
    r.ok(IMAP, ms(5));
    assert_eq!(r.ok(IMAP, ms(5)), Some(HealthState::Up));
}

#[test]
fn recovery_into_a_slow_backend_is_degraded() {
    let mut r = Rig::new();
    for _ in 0..3 {
        r.fail(IMAP);
    }
    r.ok(IMAP, ms(1500));
    r.ok(IMAP, ms(1500));
    // Two samples are under latency_min_samples: up first, then degraded.
    assert_eq!(r.m.state(), HealthState::Up);
    assert_eq!(r.ok(IMAP, ms(1500)), Some(HealthState::Degraded));
    // Slow start continues while degraded.
    assert!(r.m.admit_share(r.now) < 1.0);
}

#[test]
fn down_from_degraded_and_passive_ignored_while_down() {
    let mut r = Rig::new();
    for _ in 0..3 {
        r.ok(IMAP, ms(1200));
    }
    assert_eq!(r.m.state(), HealthState::Degraded);
    for _ in 0..3 {
        r.fail(IMAP);
    }
    assert_eq!(
        r.transitions.last().map(|t| t.from),
        Some(HealthState::Degraded)
    );
    assert_eq!(r.passive(PassiveSignal::LoginLatency(ms(1))), None);
    assert_eq!(r.passive(PassiveSignal::LoginTimeout), None);
    assert_eq!(r.m.state(), HealthState::Down);
    let _ = r.t0;
}

#[test]
fn durations_format_for_people() {
    assert_eq!(fmt_duration(ms(250)), "250ms");
    assert_eq!(fmt_duration(ms(3000)), "3s");
    assert_eq!(fmt_duration(ms(1234)), "1.2s");
}
