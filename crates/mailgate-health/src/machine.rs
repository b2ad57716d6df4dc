//! The per-backend health state machine: pure, no clock reads, no I/O.
//!
//! Every input carries the `Instant` it happened at, so the machine is table-tested with a
//! fake clock. The rules (docs/health.md has the prose):
//!
//! - **down**: `fall` consecutive failed probes of one protocol, or `fall` consecutive
//!   failed real sessions (connect failure, greeting or login timeout). A probe failure is
//!   reset only by a successful probe of the same protocol — a backend that half works
//!   cannot hide a failing login probe behind successful real logins.
//! - **back from down**: every probed protocol has `rise` consecutive successful probes;
//!   then admissions ramp up over `slow_start`.
//! - **degraded**: the median of the recent response latencies (probe steps and real
//!   logins) is at or over `degraded_latency`; back to **up** only once it is below
//!   `degraded_latency * degraded_recover_ratio` (hysteresis, so no flapping at the edge).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::settings::{HealthSettings, Protocol};

/// The health state of a backend (independent of the operator's drain flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// Answering normally.
    Up,
    /// Slow, but still admitted.
    Degraded,
    /// Probes or real logins fail: deadlocked or unreachable. Not admitted (unless the
    /// blast-radius guard suppresses it).
    Down,
}

impl HealthState {
    /// Lower-case name, stable: used as the `state` metric label and in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Up => "up",
            HealthState::Degraded => "degraded",
            HealthState::Down => "down",
        }
    }

    /// All states, for exporting `backend_state{state}` as one-hot gauges.
    pub const ALL: [HealthState; 3] = [HealthState::Up, HealthState::Degraded, HealthState::Down];
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What real sessions tell about a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveSignal {
    /// TCP connect to the backend failed (refused, unreachable, reset before the greeting).
    ConnectFailed,
    /// TCP connect did not finish in time.
    ConnectTimeout,
    /// The TLS handshake with the backend failed.
    TlsFailed,
    /// The TLS handshake with the backend did not finish in time.
    TlsTimeout,
    /// The backend sent no greeting in time.
    GreetingTimeout,
    /// The backend's greeting refused the connection (`* BYE`, `-ERR`).
    GreetingRefused,
    /// The backend gave no answer in time after its greeting (capabilities, STARTTLS,
    /// ID, XCLIENT or the login verdict), or a write to it stalled.
    LoginTimeout,
    /// The connection broke during the login relay.
    ConnectionLost,
    /// The backend broke the protocol (garbage, oversized lines, PREAUTH, injection).
    ProtocolError,
    /// The backend refused the login for reasons of its own (`NO [UNAVAILABLE]`,
    /// `-ERR [SYS/TEMP]`, a `BYE` instead of a verdict).
    TemporaryFailure,
    /// The backend accepted a login after this long, measured from sending the
    /// credentials to the verdict. Feeds the latency window.
    LoginLatency(Duration),
    /// The backend answered a login properly but refused the credentials: it is alive (the
    /// failure count starts over), but the answer carries the backend's deliberate failure
    /// delay, so it never feeds the latency window.
    Answered,
}

impl PassiveSignal {
    /// Short text for reasons and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PassiveSignal::ConnectFailed => "connect failed",
            PassiveSignal::ConnectTimeout => "connect timed out",
            PassiveSignal::TlsFailed => "tls handshake failed",
            PassiveSignal::TlsTimeout => "tls handshake timed out",
            PassiveSignal::GreetingTimeout => "greeting timed out",
            PassiveSignal::GreetingRefused => "greeting refused",
            PassiveSignal::LoginTimeout => "login timed out",
            PassiveSignal::ConnectionLost => "connection lost during login",
            PassiveSignal::ProtocolError => "protocol error",
            PassiveSignal::TemporaryFailure => "temporary failure",
            PassiveSignal::LoginLatency(_) => "login answered",
            PassiveSignal::Answered => "login refused",
        }
    }
}

/// One input to the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthEvent {
    /// A probe of `protocol` succeeded; `latency` is its slowest single response.
    ProbeOk {
        /// Probed protocol.
        protocol: Protocol,
        /// Slowest response of the probe (compared with `degraded_latency`).
        latency: Duration,
    },
    /// A probe of `protocol` failed.
    ProbeFailed {
        /// Probed protocol.
        protocol: Protocol,
        /// Why, e.g. `login timed out after 3s` (never contains secrets).
        reason: String,
    },
    /// A signal from a real session.
    Passive(PassiveSignal),
}

/// A change of health state. The caller logs it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: HealthState,
    /// State after.
    pub to: HealthState,
    /// Why, for people: logged and shown in `/status`.
    pub reason: String,
}

/// Format a duration for reasons: `250ms`, `1.2s`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if d.subsec_millis() == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

const PROTOCOLS: [Protocol; 2] = [Protocol::Imap, Protocol::Pop3];

#[derive(Debug, Clone, Copy, Default)]
struct ProbeCounters {
    probed: bool,
    failures: u32,
    successes: u32,
}

/// The health of one backend.
#[derive(Debug, Clone)]
pub struct BackendHealth {
    settings: HealthSettings,
    state: HealthState,
    since: Instant,
    probes: [ProbeCounters; 2],
    passive_failures: u32,
    latencies: VecDeque<(Instant, Duration)>,
    recovered_at: Option<Instant>,
}

impl BackendHealth {
    /// A new backend, `up` from `now` (mailgate trusts a backend until told otherwise, so
    /// a restart does not refuse everything for `rise` intervals).
    pub fn new(settings: HealthSettings, now: Instant) -> Self {
        BackendHealth {
            settings,
            state: HealthState::Up,
            since: now,
            probes: [ProbeCounters::default(); 2],
            passive_failures: 0,
            latencies: VecDeque::new(),
            recovered_at: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Replace the settings (on reload); counters are kept.
    pub fn set_settings(&mut self, settings: HealthSettings) {
        self.settings = settings;
    }

    /// Stop counting a protocol that is no longer probed (its backend no longer serves it).
    pub fn forget_protocol(&mut self, protocol: Protocol) {
        self.probes[crate::settings::protocol_index(protocol)] = ProbeCounters::default();
    }

    /// The share of logins to admit at `now`: 1.0 normally, ramping from
    /// `slow_start_floor` to 1.0 during `slow_start` after coming back from `down`.
    pub fn admit_share(&self, now: Instant) -> f64 {
        let Some(at) = self.recovered_at else {
            return 1.0;
        };
        if self.state == HealthState::Down || self.settings.slow_start.is_zero() {
            return 1.0;
        }
        let elapsed = now.saturating_duration_since(at);
        if elapsed >= self.settings.slow_start {
            return 1.0;
        }
        let floor = self.settings.slow_start_floor.clamp(0.0, 1.0);
        let ramp = elapsed.as_secs_f64() / self.settings.slow_start.as_secs_f64();
        floor + (1.0 - floor) * ramp
    }

    /// A limit of `full` ramped by the slow-start share at `now`: `ceil(share × full)`, at
    /// least 1; `None` when slow start is not running (the full limit applies, if any).
    pub fn slow_start_cap(&self, now: Instant, full: u32) -> Option<u32> {
        let share = self.admit_share(now);
        if share >= 1.0 {
            return None;
        }
        // Less a rounding error's worth, so that 0.55 × 100 is 55, not 56.
        let cap = (share * f64::from(full) - 1e-9).ceil() as u32;
        Some(cap.clamp(1, full.max(1)))
    }

    /// The settings in force.
    pub fn settings(&self) -> &HealthSettings {
        &self.settings
    }

    /// The median of the recent latency samples at `now`, with the number of samples, or
    /// `None` with fewer than `latency_min_samples`.
    pub fn windowed_latency(&self, now: Instant) -> Option<(Duration, usize)> {
        // In the window: at most `latency_window` before `now` (one comparison per sample,
        // not a duration); every sample when the window reaches before the clock's start.
        let cutoff = now.checked_sub(self.settings.latency_window);
        let mut recent: Vec<Duration> = self
            .latencies
            .iter()
            .filter(|(at, _)| cutoff.is_none_or(|c| *at >= c))
            .map(|(_, d)| *d)
            .collect();
        if recent.is_empty() || recent.len() < self.settings.latency_min_samples {
            return None;
        }
        // The median: the element a sort would put in the middle, without the sort.
        let mid = recent.len() / 2;
        let (_, median, _) = recent.select_nth_unstable(mid);
        Some((*median, recent.len()))
    }

    /// Feed one event; returns the transition it caused, if any.
    pub fn apply(&mut self, event: HealthEvent, now: Instant) -> Option<Transition> {
        match event {
            HealthEvent::ProbeOk { protocol, latency } => self.probe_ok(protocol, latency, now),
            HealthEvent::ProbeFailed { protocol, reason } => {
                self.probe_failed(protocol, &reason, now)
            }
            HealthEvent::Passive(PassiveSignal::LoginLatency(latency)) => {
                if self.state == HealthState::Down {
                    return None;
                }
                self.passive_failures = 0;
                self.push_latency(latency, now);
                self.evaluate_latency(now)
            }
            HealthEvent::Passive(PassiveSignal::Answered) => {
                if self.state != HealthState::Down {
                    self.passive_failures = 0;
                }
                None
            }
            HealthEvent::Passive(signal) => self.passive_failed(signal, now),
        }
    }

    fn probe_ok(
        &mut self,
        protocol: Protocol,
        latency: Duration,
        now: Instant,
    ) -> Option<Transition> {
        let c = &mut self.probes[crate::settings::protocol_index(protocol)];
        c.probed = true;
        c.failures = 0;
        c.successes = c.successes.saturating_add(1);
        self.passive_failures = 0;
        self.push_latency(latency, now);
        if self.state != HealthState::Down {
            return self.evaluate_latency(now);
        }
        let rise = self.settings.rise.max(1);
        let all_risen = self.probes.iter().all(|c| !c.probed || c.successes >= rise);
        if !all_risen {
            return None;
        }
        let probed: Vec<&str> = PROTOCOLS
            .iter()
            .filter(|p| self.probes[crate::settings::protocol_index(**p)].probed)
            .map(|p| p.as_str())
            .collect();
        let mut reason = format!("{rise} consecutive successful {} probes", probed.join("+"));
        let to = match self.windowed_latency(now) {
            Some((median, _)) if median >= self.settings.degraded_latency => {
                reason.push_str(&format!(", but latency {} is slow", fmt_duration(median)));
                HealthState::Degraded
            }
            _ => HealthState::Up,
        };
        if !self.settings.slow_start.is_zero() {
            reason.push_str(&format!(
                "; slow start over {}",
                fmt_duration(self.settings.slow_start)
            ));
        }
        self.recovered_at = Some(now);
        Some(self.go(to, reason, now))
    }

    fn probe_failed(&mut self, protocol: Protocol, why: &str, now: Instant) -> Option<Transition> {
        let c = &mut self.probes[crate::settings::protocol_index(protocol)];
        c.probed = true;
        c.successes = 0;
        c.failures = c.failures.saturating_add(1);
        let failures = c.failures;
        if self.state == HealthState::Down || failures < self.settings.fall.max(1) {
            return None;
        }
        let reason = format!("{failures} consecutive {protocol} probe failures, last: {why}");
        Some(self.go_down(reason, now))
    }

    fn passive_failed(&mut self, signal: PassiveSignal, now: Instant) -> Option<Transition> {
        self.passive_failures = self.passive_failures.saturating_add(1);
        if self.state == HealthState::Down || self.passive_failures < self.settings.fall.max(1) {
            return None;
        }
        let reason = format!(
            "{} consecutive failed real sessions, last: {}",
            self.passive_failures,
            signal.as_str()
        );
        Some(self.go_down(reason, now))
    }

    fn go_down(&mut self, reason: String, now: Instant) -> Transition {
        for c in &mut self.probes {
            c.successes = 0;
        }
        self.passive_failures = 0;
        self.latencies.clear();
        self.recovered_at = None;
        self.go(HealthState::Down, reason, now)
    }

    fn push_latency(&mut self, latency: Duration, now: Instant) {
        let cap = self.settings.latency_samples.max(1);
        while self.latencies.len() >= cap {
            self.latencies.pop_front();
        }
        self.latencies.push_back((now, latency));
    }

    fn evaluate_latency(&mut self, now: Instant) -> Option<Transition> {
        let (median, n) = self.windowed_latency(now)?;
        let threshold = self.settings.degraded_latency;
        match self.state {
            HealthState::Up if median >= threshold => {
                let reason = format!(
                    "latency {} at or over {} (median of {n})",
                    fmt_duration(median),
                    fmt_duration(threshold)
                );
                Some(self.go(HealthState::Degraded, reason, now))
            }
            HealthState::Degraded if median < self.settings.recover_latency() => {
                let reason = format!(
                    "latency {} back under {} (median of {n})",
                    fmt_duration(median),
                    fmt_duration(self.settings.recover_latency())
                );
                Some(self.go(HealthState::Up, reason, now))
            }
            _ => None,
        }
    }

    fn go(&mut self, to: HealthState, reason: String, now: Instant) -> Transition {
        let from = self.state;
        self.state = to;
        self.since = now;
        Transition { from, to, reason }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
