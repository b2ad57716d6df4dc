//! The knobs of the health model, with their defaults.
//!
//! This crate does not read the config file: the server maps the routing crate's
//! `HealthConfig` onto [`HealthSettings`], so that health can be built and tested on its
//! own. Every default here is documented in docs/health.md.

use std::time::Duration;

/// The probe protocols (each backend is probed once per protocol it serves).
pub use mailgate_proto::Protocol;

/// Slot of a protocol in per-protocol arrays.
pub(crate) fn protocol_index(p: Protocol) -> usize {
    match p {
        Protocol::Imap => 0,
        Protocol::Pop3 => 1,
    }
}

/// Health model settings. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    /// Time between two probes of one backend and protocol (start to start), before jitter.
    pub interval: Duration,
    /// Jitter added to each probe interval: a random share in `[0, jitter)` of `interval`.
    pub jitter: f64,
    /// Limit for each step of a probe (connect, greeting, each command).
    pub timeout: Duration,
    /// Consecutive failures (of one probe protocol, or of passive signals) that make a
    /// backend `down`.
    pub fall: u32,
    /// Consecutive successful probes (of every probed protocol) that bring a `down`
    /// backend back.
    pub rise: u32,
    /// Windowed response latency at or above which a backend is `degraded`.
    pub degraded_latency: Duration,
    /// A `degraded` backend is `up` again once its windowed latency is below
    /// `degraded_latency * degraded_recover_ratio` (hysteresis band).
    pub degraded_recover_ratio: f64,
    /// Latency samples older than this are ignored.
    pub latency_window: Duration,
    /// At most this many recent latency samples are kept (the median is taken over them).
    pub latency_samples: usize,
    /// Fewer samples than this never change the latency verdict.
    pub latency_min_samples: usize,
    /// Automatic `down` never refuses more than this share of all backends at once.
    pub max_auto_down_share: f64,
    /// After coming back from `down`, admissions ramp from `slow_start_floor` to 100 %
    /// over this time. Zero disables the ramp.
    pub slow_start: Duration,
    /// Share of logins admitted at the very start of the slow-start ramp.
    pub slow_start_floor: f64,
    /// During slow start, a backend without `max_logins_in_flight` has at most the ramp's
    /// share of this many logins in flight (connect to verdict) at once, so a reconnect
    /// storm cannot pile more connections into a just-recovered backend's accept queue
    /// than it works through. A backend with `max_logins_in_flight` ramps that instead.
    /// Zero: no such limit for backends without `max_logins_in_flight`.
    pub slow_start_logins_in_flight: u32,
    /// Default window over which a kick spreads its closes.
    pub kick_window: Duration,
    /// A kicked session closes once no bytes moved for this long ...
    pub kick_quiet: Duration,
    /// ... or at the latest this long after its scheduled kick time.
    pub kick_max_wait: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: Duration::from_secs(2),
            jitter: 0.1,
            timeout: Duration::from_secs(3),
            fall: 3,
            rise: 2,
            degraded_latency: Duration::from_secs(1),
            degraded_recover_ratio: 0.75,
            latency_window: Duration::from_secs(60),
            latency_samples: 16,
            latency_min_samples: 3,
            max_auto_down_share: 0.5,
            slow_start: Duration::from_secs(30),
            slow_start_floor: 0.1,
            slow_start_logins_in_flight: 100,
            kick_window: Duration::from_secs(60),
            kick_quiet: Duration::from_millis(500),
            kick_max_wait: Duration::from_secs(10),
        }
    }
}

impl HealthSettings {
    /// The whole-probe safety limit the scheduler applies on top of the per-step
    /// `timeout` the prober enforces: a login probe has up to eight steps.
    pub fn probe_deadline(&self) -> Duration {
        self.timeout.saturating_mul(8)
    }

    /// The latency under which a degraded backend counts as recovered.
    pub fn recover_latency(&self) -> Duration {
        self.degraded_latency
            .mul_f64(self.degraded_recover_ratio.clamp(0.0, 1.0))
    }
}
