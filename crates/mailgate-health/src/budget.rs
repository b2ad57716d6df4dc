//! Admission of a login to a backend, and the RAII slots that count it.
//!
//! The session driver calls [`HealthView::admit`] for every login before it connects to
//! the backend. A refusal is answered at once with `NO [UNAVAILABLE] <message>` /
//! `-ERR [SYS/TEMP] <message>`. An admitted login holds a [`LoginPermit`] (a login in
//! flight) until the backend's verdict; on success it becomes a [`SessionGuard`] (a
//! spliced session) for the life of the session. Both release their count in `Drop`, so
//! no early return, error or panic can leak one.
//!
//! Checks, in order: known backend, drain (routing file or admin), health (`down` unless the guard
//! suppresses it), logins in flight, budget (`max_sessions` counts spliced sessions plus
//! logins in flight), slow start: the share of attempts, then the ramped limits (logins in
//! flight: `max_logins_in_flight`, or `slow_start_logins_in_flight` without it; the
//! `max_sessions` budget), all refused as `slow_start`.
//!
//! Fallback: [`HealthView::admit_with_fallback`] tries the primary, then the fallback, and
//! reports the primary's refusal when both refuse. Callers that need to know which backend
//! admitted read [`LoginPermit::backend`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::machine::HealthState;
use crate::view::{HealthView, Slot};

/// Slow start applies its share to the attempts of each such period.
const SLOW_START_EPOCH: Duration = Duration::from_secs(1);

/// Why a login was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The backend is `down`.
    Down,
    /// An operator drained the backend.
    Drained,
    /// `max_sessions` reached.
    OverBudget,
    /// Too many logins waiting for the backend's verdict.
    LoginsInFlight,
    /// The backend just came back and admits only a share of logins for now.
    SlowStart,
    /// The backend is not in the routing table (any more).
    Unknown,
}

impl RefusalReason {
    /// Stable label for `refused_total{backend,reason}`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Down => "down",
            RefusalReason::Drained => "drained",
            RefusalReason::OverBudget => "over_budget",
            RefusalReason::LoginsInFlight => "logins_in_flight",
            RefusalReason::SlowStart => "slow_start",
            RefusalReason::Unknown => "unknown_backend",
        }
    }

    /// Every reason, for pre-registering metric series.
    pub const ALL: [RefusalReason; 6] = [
        RefusalReason::Down,
        RefusalReason::Drained,
        RefusalReason::OverBudget,
        RefusalReason::LoginsInFlight,
        RefusalReason::SlowStart,
        RefusalReason::Unknown,
    ];
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused login. The client gets `NO [UNAVAILABLE]` / `-ERR [SYS/TEMP]` with the
/// backend's configured message; `reason` goes to logs and metrics only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend {backend} does not admit logins: {reason}")]
pub struct Refusal {
    /// The backend that refused.
    pub backend: String,
    /// Why.
    pub reason: RefusalReason,
}

/// A login in flight to a backend. Drop releases the slot; [`LoginPermit::into_session`]
/// turns it into a spliced-session slot.
#[derive(Debug)]
#[must_use = "dropping the permit releases the login slot at once"]
pub struct LoginPermit {
    slot: Arc<Slot>,
}

impl LoginPermit {
    /// The backend that admitted the login (the fallback, when the primary refused).
    pub fn backend(&self) -> &str {
        &self.slot.name
    }

    /// The backend accepted the login: count a spliced session instead of a login.
    pub fn into_session(self) -> SessionGuard {
        // Count the session before the permit's drop releases the login, so the budget
        // never reads low in between.
        self.slot.sessions.fetch_add(1, Ordering::AcqRel);
        SessionGuard {
            slot: Arc::clone(&self.slot),
        }
    }
}

impl Drop for LoginPermit {
    fn drop(&mut self) {
        self.slot.logins_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A spliced session counted against a backend's budget. Drop releases it.
#[derive(Debug)]
#[must_use = "dropping the guard releases the session slot at once"]
pub struct SessionGuard {
    slot: Arc<Slot>,
}

impl SessionGuard {
    /// The backend the session is spliced to.
    pub fn backend(&self) -> &str {
        &self.slot.name
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.slot.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HealthView {
    /// May a new login go to `backend` now? Never blocks on I/O.
    pub fn admit(&self, backend: &str) -> Result<LoginPermit, Refusal> {
        self.admit_at(backend, Instant::now())
    }

    /// [`HealthView::admit`] with an explicit clock (slow start depends on it).
    pub fn admit_at(&self, backend: &str, now: Instant) -> Result<LoginPermit, Refusal> {
        let refuse = |reason| Refusal {
            backend: backend.to_string(),
            reason,
        };
        let Some(slot) = self.slot(backend) else {
            return Err(refuse(RefusalReason::Unknown));
        };
        if slot.drained.load(Ordering::Acquire) || slot.file_drained.load(Ordering::Acquire) {
            return Err(refuse(RefusalReason::Drained));
        }
        // Check and count under the backend's lock so that concurrent logins cannot both
        // take the last slot; releases are plain atomic decrements.
        let mut st = slot.lock();
        if st.machine.state() == HealthState::Down && st.down_enforced == Some(true) {
            return Err(refuse(RefusalReason::Down));
        }
        let in_flight = slot.logins_in_flight.load(Ordering::Acquire);
        if st.max_logins_in_flight.is_some_and(|max| in_flight >= max) {
            return Err(refuse(RefusalReason::LoginsInFlight));
        }
        let used = slot
            .sessions
            .load(Ordering::Acquire)
            .saturating_add(in_flight);
        if st.max_sessions.is_some_and(|max| used >= max) {
            return Err(refuse(RefusalReason::OverBudget));
        }
        let share = st.machine.admit_share(now);
        if share < 1.0 {
            // Deterministic share per second: admit while admitted < ceil(share * attempts).
            let fresh = st
                .slow_start_epoch
                .is_none_or(|e| now.saturating_duration_since(e) >= SLOW_START_EPOCH);
            if fresh {
                st.slow_start_epoch = Some(now);
                st.slow_start_seen = 0;
                st.slow_start_admitted = 0;
            }
            st.slow_start_seen += 1;
            let quota = (share * st.slow_start_seen as f64).ceil() as u64;
            if st.slow_start_admitted >= quota {
                return Err(refuse(RefusalReason::SlowStart));
            }
            // The ramp also bounds what the backend holds at once (HAProxy ramps a
            // server's maxconn the same way): logins in flight, and the session budget.
            let full_in_flight = st
                .max_logins_in_flight
                .unwrap_or(st.machine.settings().slow_start_logins_in_flight);
            let over = |full: u32, n: u32| {
                full > 0
                    && st
                        .machine
                        .slow_start_cap(now, full)
                        .is_some_and(|cap| n >= cap)
            };
            if over(full_in_flight, in_flight) || st.max_sessions.is_some_and(|m| over(m, used)) {
                return Err(refuse(RefusalReason::SlowStart));
            }
            st.slow_start_admitted += 1;
        }
        slot.logins_in_flight.fetch_add(1, Ordering::AcqRel);
        drop(st);
        Ok(LoginPermit { slot })
    }

    /// Admit to `primary`, or to `fallback` when the primary refuses. When both refuse (or
    /// there is no fallback) the primary's refusal is returned.
    pub fn admit_with_fallback(
        &self,
        primary: &str,
        fallback: Option<&str>,
    ) -> Result<LoginPermit, Refusal> {
        match self.admit(primary) {
            Ok(permit) => Ok(permit),
            Err(refusal) => match fallback {
                Some(fb) if fb != primary => self.admit(fb).map_err(|_| refusal),
                _ => Err(refusal),
            },
        }
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
