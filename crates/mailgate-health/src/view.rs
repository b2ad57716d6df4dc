//! The shared health view: every backend's state machine, counters and operator flag,
//! keyed by backend name, plus the blast-radius guard.
//!
//! `HealthView` is an `Arc` inside, cheap to clone. Hot counters (sessions, logins in
//! flight, drain flag) are atomics; each backend's state sits behind its own mutex. The
//! guard lock is taken only when a backend enters or leaves `down`, and always before any
//! backend's mutex, never while holding one.
//!
//! The view logs every transition once (`warn` into and out of `down`, `info` otherwise)
//! and returns it, so callers can update metrics without logging again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Instant, SystemTime};

use crate::machine::{BackendHealth, HealthEvent, HealthState, PassiveSignal, Transition};
use crate::probe::{ProbeOutcome, ProbeResult};
use crate::settings::{HealthSettings, Protocol};

/// A backend as the routing table defines it, for [`HealthView::set_backends`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// Backend name.
    pub name: String,
    /// Budget of spliced sessions plus logins in flight; `None`: unlimited.
    pub max_sessions: Option<u32>,
    /// Most logins waiting for this backend's verdict at once; `None`: unlimited.
    pub max_logins_in_flight: Option<u32>,
    /// `drain: true` in the routing file (every instance that reads it drains).
    pub drain: Option<DrainNote>,
}

/// One source's drain of a backend: its reason and since when (see [`DrainSources`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainNote {
    /// Why, as the operator wrote it.
    pub reason: Option<String>,
    /// Since when (the admin drain; the file's drain has no instance-wide time).
    pub since: Option<SystemTime>,
}

/// Where a backend's drain comes from. Both may apply; the backend is drained while
/// either does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainSources {
    /// `drain: true` in the routing file.
    pub file: Option<DrainNote>,
    /// The admin API of this instance (its override, kept in `admin.state_file`).
    pub local: Option<DrainNote>,
}

impl BackendSpec {
    /// A backend without limits.
    pub fn new(name: impl Into<String>) -> Self {
        BackendSpec {
            name: name.into(),
            max_sessions: None,
            max_logins_in_flight: None,
            drain: None,
        }
    }
}

/// One backend's state for `/status`, metrics and the status page.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendStatus {
    /// Backend name.
    pub name: String,
    /// Health state.
    pub state: HealthState,
    /// Down, but still admitted because the blast-radius guard holds.
    pub down_suppressed: bool,
    /// Drained (by the routing file, this instance's admin API, or both).
    pub drained: bool,
    /// Which drains apply, with their reasons.
    pub drains: DrainSources,
    /// Whether a new login would be admitted now (ignoring the slow-start share).
    pub admitting: bool,
    /// Spliced sessions.
    pub sessions: u32,
    /// Logins waiting for the backend's verdict.
    pub logins_in_flight: u32,
    /// Budget.
    pub max_sessions: Option<u32>,
    /// Limit on logins in flight.
    pub max_logins_in_flight: Option<u32>,
    /// Share of logins admitted (below 1.0 during slow start).
    pub admit_share: f64,
    /// Median of recent response latencies, when there are enough samples.
    pub latency: Option<std::time::Duration>,
    /// The most recent probe of any protocol.
    pub last_probe: Option<ProbeResult>,
    /// The most recent probe of each probed protocol.
    pub probes: Vec<ProbeResult>,
    /// Wall-clock time and reason of the last transition.
    pub last_transition: Option<(SystemTime, String)>,
    /// When the current state began (wall clock, approximate).
    pub since: SystemTime,
}

#[derive(Debug)]
pub(crate) struct SlotState {
    pub(crate) machine: BackendHealth,
    pub(crate) max_sessions: Option<u32>,
    pub(crate) max_logins_in_flight: Option<u32>,
    /// The guard's verdict while down: `Some(true)` refused, `Some(false)` suppressed
    /// (still admitted), `None` not down or not yet evaluated.
    pub(crate) down_enforced: Option<bool>,
    pub(crate) drains: DrainSources,
    pub(crate) probes: [Option<ProbeResult>; 2],
    pub(crate) last_transition: Option<(SystemTime, String)>,
    /// Slow-start accounting: attempts and admissions since `slow_start_epoch`
    /// (restarted every second so the share applies to the current rate, not to debt).
    pub(crate) slow_start_seen: u64,
    pub(crate) slow_start_admitted: u64,
    pub(crate) slow_start_epoch: Option<Instant>,
}

/// One backend in the view. Guards hold an `Arc` to it, so removing a backend from the
/// routing table never invalidates a live permit.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) name: String,
    pub(crate) sessions: AtomicU32,
    pub(crate) logins_in_flight: AtomicU32,
    /// The admin API's (instance-local) drain.
    pub(crate) drained: AtomicBool,
    /// `drain: true` in the routing file.
    pub(crate) file_drained: AtomicBool,
    pub(crate) state: Mutex<SlotState>,
}

impl Slot {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic while holding the lock leaves consistent counters; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Apply the routing file's drain to a slot (under its lock); log a change once.
fn set_file_drain(slot: &Slot, st: &mut SlotState, drain: Option<DrainNote>) {
    let drained = drain.is_some();
    if slot.file_drained.swap(drained, Ordering::AcqRel) != drained {
        let reason = drain
            .as_ref()
            .and_then(|d| d.reason.as_deref())
            .unwrap_or("");
        tracing::warn!(backend = %slot.name, drained, reason, "routing file drain changed");
    }
    st.drains.file = drain;
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) settings: RwLock<HealthSettings>,
    pub(crate) backends: RwLock<HashMap<String, Arc<Slot>>>,
    guard: Mutex<()>,
}

/// The shared health view. Clone it freely.
#[derive(Debug, Clone)]
pub struct HealthView {
    pub(crate) inner: Arc<Inner>,
}

impl HealthView {
    /// An empty view; add backends with [`HealthView::set_backends`].
    pub fn new(settings: HealthSettings) -> Self {
        HealthView {
            inner: Arc::new(Inner {
                settings: RwLock::new(settings),
                backends: RwLock::new(HashMap::new()),
                guard: Mutex::new(()),
            }),
        }
    }

    /// The current settings.
    pub fn settings(&self) -> HealthSettings {
        self.inner
            .settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replace the settings (config reload). Health counters are kept.
    pub fn set_settings(&self, settings: HealthSettings) {
        *self
            .inner
            .settings
            .write()
            .unwrap_or_else(|p| p.into_inner()) = settings.clone();
        for slot in self.slots() {
            slot.lock().machine.set_settings(settings.clone());
        }
        self.rebalance();
    }

    /// Apply the routing table's backends: add new ones (`up`), update the limits and the
    /// file's drain of existing ones (their health, admin drain and counts are kept),
    /// remove the rest.
    pub fn set_backends(&self, specs: impl IntoIterator<Item = BackendSpec>) {
        let settings = self.settings();
        let now = Instant::now();
        {
            let mut map = self.write_map();
            let mut next = HashMap::new();
            for spec in specs {
                let slot = match map.remove(&spec.name) {
                    Some(slot) => slot,
                    None => Arc::new(Slot {
                        name: spec.name.clone(),
                        sessions: AtomicU32::new(0),
                        logins_in_flight: AtomicU32::new(0),
                        drained: AtomicBool::new(false),
                        file_drained: AtomicBool::new(false),
                        state: Mutex::new(SlotState {
                            machine: BackendHealth::new(settings.clone(), now),
                            max_sessions: None,
                            max_logins_in_flight: None,
                            down_enforced: None,
                            drains: DrainSources::default(),
                            probes: [None, None],
                            last_transition: None,
                            slow_start_seen: 0,
                            slow_start_admitted: 0,
                            slow_start_epoch: None,
                        }),
                    }),
                };
                {
                    let mut st = slot.lock();
                    st.max_sessions = spec.max_sessions;
                    st.max_logins_in_flight = spec.max_logins_in_flight;
                    set_file_drain(&slot, &mut st, spec.drain);
                }
                next.insert(spec.name, slot);
            }
            *map = next;
        }
        self.rebalance();
    }

    /// Backend names, sorted.
    pub fn backends(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read_map().keys().cloned().collect();
        names.sort();
        names
    }

    /// Feed a signal from a real session (now).
    pub fn report(&self, backend: &str, signal: PassiveSignal) -> Option<Transition> {
        self.report_at(backend, signal, Instant::now())
    }

    /// Feed a signal from a real session that happened at `now`.
    pub fn report_at(
        &self,
        backend: &str,
        signal: PassiveSignal,
        now: Instant,
    ) -> Option<Transition> {
        self.apply(backend, HealthEvent::Passive(signal), now, None)
    }

    /// Feed a probe result (the scheduler calls this).
    pub fn record_probe(
        &self,
        backend: &str,
        protocol: Protocol,
        outcome: &ProbeOutcome,
        now: Instant,
    ) -> Option<Transition> {
        let event = match &outcome.result {
            Ok(()) => HealthEvent::ProbeOk {
                protocol,
                latency: outcome.latency,
            },
            Err(e) => HealthEvent::ProbeFailed {
                protocol,
                reason: e.to_string(),
            },
        };
        let result = ProbeResult {
            protocol,
            ok: outcome.result.is_ok(),
            latency: outcome.latency,
            duration: outcome.duration,
            at: SystemTime::now(),
            error: outcome.result.as_ref().err().map(|e| e.to_string()),
        };
        self.apply(backend, event, now, Some(result))
    }

    /// Stop counting `protocol` of `backend` (no longer probed).
    pub fn forget_protocol(&self, backend: &str, protocol: Protocol) {
        if let Some(slot) = self.slot(backend) {
            let mut st = slot.lock();
            st.machine.forget_protocol(protocol);
            st.probes[crate::settings::protocol_index(protocol)] = None;
        }
    }

    fn apply(
        &self,
        backend: &str,
        event: HealthEvent,
        now: Instant,
        probe: Option<ProbeResult>,
    ) -> Option<Transition> {
        let slot = self.slot(backend)?;
        let transition = {
            let mut st = slot.lock();
            if let Some(p) = probe {
                let i = crate::settings::protocol_index(p.protocol);
                st.probes[i] = Some(p);
            }
            let t = st.machine.apply(event, now)?;
            st.last_transition = Some((SystemTime::now(), t.reason.clone()));
            st.slow_start_seen = 0;
            st.slow_start_admitted = 0;
            st.slow_start_epoch = None;
            st.down_enforced = None;
            t
        };
        if transition.to == HealthState::Down || transition.from == HealthState::Down {
            tracing::warn!(
                backend,
                from = transition.from.as_str(),
                to = transition.to.as_str(),
                reason = %transition.reason,
                "backend health changed"
            );
            self.rebalance();
        } else {
            tracing::info!(
                backend,
                from = transition.from.as_str(),
                to = transition.to.as_str(),
                reason = %transition.reason,
                "backend health changed"
            );
        }
        Some(transition)
    }

    /// The blast-radius guard: of the backends that are `down`, enforce (refuse) at most
    /// `floor(max_auto_down_share * backends)`, the longest-down first; the others stay
    /// admitted and show `down_suppressed`. Idempotent; run after every change.
    fn rebalance(&self) {
        let _guard = self.inner.guard.lock().unwrap_or_else(|p| p.into_inner());
        let share = self.settings().max_auto_down_share.clamp(0.0, 1.0);
        let slots = self.slots();
        let allowed = (share * slots.len() as f64 + 1e-9).floor() as usize;
        let mut down: Vec<(Instant, Option<bool>, &Arc<Slot>)> = Vec::new();
        for slot in &slots {
            let mut st = slot.lock();
            if st.machine.state() == HealthState::Down {
                down.push((st.machine.since(), st.down_enforced, slot));
            } else {
                st.down_enforced = None;
            }
        }
        // Keep enforcing those already enforced (oldest first), then the rest by age.
        down.sort_by_key(|(since, enforced, _)| (*enforced != Some(true), *since));
        for (i, (_, was, slot)) in down.iter().enumerate() {
            let enforce = i < allowed;
            slot.lock().down_enforced = Some(enforce);
            if *was == Some(enforce) {
                continue;
            }
            if enforce {
                tracing::warn!(backend = %slot.name, "backend down: new logins refused");
            } else {
                tracing::warn!(
                    backend = %slot.name,
                    down = down.len(),
                    backends = slots.len(),
                    max_auto_down_share = share,
                    "backend down but still admitted (down_suppressed): refusing it would take \
                     more than max_auto_down_share of the backends out; check the probe account"
                );
            }
        }
    }

    /// The status of every backend, sorted by name.
    pub fn snapshot(&self) -> Vec<BackendStatus> {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut out: Vec<BackendStatus> = self
            .slots()
            .into_iter()
            .map(|slot| {
                let st = slot.lock();
                let state = st.machine.state();
                let drained = slot.drained.load(Ordering::Acquire)
                    || slot.file_drained.load(Ordering::Acquire);
                let down_suppressed = state == HealthState::Down && st.down_enforced != Some(true);
                let mut probes: Vec<ProbeResult> = st.probes.iter().flatten().cloned().collect();
                probes.sort_by_key(|p| p.protocol);
                let last_probe = probes.iter().max_by_key(|p| p.at).cloned();
                let age = now.saturating_duration_since(st.machine.since());
                BackendStatus {
                    name: slot.name.clone(),
                    state,
                    down_suppressed,
                    drained,
                    drains: st.drains.clone(),
                    admitting: !drained && (state != HealthState::Down || down_suppressed),
                    sessions: slot.sessions.load(Ordering::Acquire),
                    logins_in_flight: slot.logins_in_flight.load(Ordering::Acquire),
                    max_sessions: st.max_sessions,
                    max_logins_in_flight: st.max_logins_in_flight,
                    admit_share: st.machine.admit_share(now),
                    latency: st.machine.windowed_latency(now).map(|(d, _)| d),
                    last_probe,
                    probes,
                    last_transition: st.last_transition.clone(),
                    since: wall.checked_sub(age).unwrap_or(wall),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub(crate) fn slot(&self, backend: &str) -> Option<Arc<Slot>> {
        self.read_map().get(backend).cloned()
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        self.read_map().values().cloned().collect()
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Slot>>> {
        self.inner
            .backends
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Slot>>> {
        self.inner
            .backends
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }
}
