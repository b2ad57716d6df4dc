//! What a new login for a backend meets right now, worked out once for the status page,
//! its domain check and `/status`, so that the words customers read and the notes
//! operators read cannot disagree with each other or with admission.
//!
//! The health view gives each backend's `admitting` (drain flag and health, with the
//! blast-radius guard applied) and its counters. Admission (`HealthView::admit`) also
//! refuses a backend at its budget (`sessions + logins in flight >= max_sessions`) and a
//! share of logins during slow start, and `admit_with_fallback` then tries the backend's
//! `fallback` (one level: the fallback's own fallback is never tried). This module
//! applies the same rules to a snapshot. The momentary `max_logins_in_flight` limit is
//! left out: it lasts as long as a login, not a state a reader can act on.

use mailgate_config::RoutingTable;
use mailgate_health::{BackendStatus, HealthState};

/// Why a backend turns every new login away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// An operator drained it.
    Drained,
    /// It is down and the guard lets that be enforced.
    Down,
    /// It holds `max_sessions` sessions and logins.
    AtBudget,
}

impl Cause {
    /// Words for operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Drained => "drained",
            Cause::Down => "down",
            Cause::AtBudget => "at its session budget",
        }
    }
}

/// What a new login routed to a backend meets now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Up and admitting.
    Normal,
    /// Degraded (slow), still admitting.
    Slow,
    /// Down, but still admitted because the blast-radius guard holds (`down_suppressed`).
    DownAdmitted,
    /// Back from down, admitting only `share` of logins for now; the rest go to
    /// `fallback` when it admits.
    Recovering {
        /// Share of logins admitted.
        share: f64,
        /// The fallback that takes the rest, if it admits.
        fallback: Option<String>,
    },
    /// Turns every login away, and its fallback takes them.
    Fallback {
        /// Why the backend itself does not admit.
        cause: Cause,
        /// The fallback's name.
        fallback: String,
    },
    /// Turns every login away and nothing takes them.
    Refused {
        /// Why.
        cause: Cause,
        /// A configured fallback that does not admit either.
        fallback: Option<String>,
    },
}

impl Verdict {
    /// Stable token for `/status` (`page_state`) and tests.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Normal => "ok",
            Verdict::Slow => "slow",
            Verdict::DownAdmitted => "down_admitted",
            Verdict::Recovering { .. } => "recovering",
            Verdict::Fallback { .. } => "fallback",
            Verdict::Refused {
                cause: Cause::Drained,
                ..
            } => "maintenance",
            Verdict::Refused {
                cause: Cause::Down, ..
            } => "not_accepting",
            Verdict::Refused {
                cause: Cause::AtBudget,
                ..
            } => "full",
        }
    }

    /// Whether a new login is accepted (by the backend or its fallback); during slow
    /// start without a fallback only some are.
    pub fn accepts_logins(&self) -> bool {
        !matches!(self, Verdict::Refused { .. })
    }
}

/// The backend holds its whole budget (spliced sessions plus logins in flight).
pub fn at_budget(s: &BackendStatus) -> bool {
    s.max_sessions
        .is_some_and(|max| s.sessions.saturating_add(s.logins_in_flight) >= max)
}

/// Whether a login sent to this backend now would be admitted (slow start aside). The
/// drain flag is checked first, as admission does (`admitting` already includes it).
fn admits(s: &BackendStatus) -> bool {
    !s.drained && s.admitting && !at_budget(s)
}

/// The configured fallback of `name`, if it is another backend.
pub fn fallback_of<'a>(name: &str, table: &'a RoutingTable) -> Option<&'a str> {
    table
        .backend(name)
        .and_then(|b| b.fallback.as_deref())
        .filter(|fb| *fb != name)
}

/// Work out the verdict of `s`; `all` is every backend's status (for the fallback).
pub fn assess(s: &BackendStatus, all: &[BackendStatus], table: &RoutingTable) -> Verdict {
    let fallback = fallback_of(&s.name, table);
    let fallback_admits = fallback
        .and_then(|fb| all.iter().find(|o| o.name == fb))
        .is_some_and(admits);
    let usable = fallback.filter(|_| fallback_admits).map(str::to_string);
    if !admits(s) {
        let cause = if s.drained {
            Cause::Drained
        } else if !s.admitting {
            Cause::Down
        } else {
            Cause::AtBudget
        };
        return match usable {
            Some(fallback) => Verdict::Fallback { cause, fallback },
            None => Verdict::Refused {
                cause,
                fallback: fallback.map(str::to_string),
            },
        };
    }
    if s.down_suppressed {
        return Verdict::DownAdmitted;
    }
    if s.admit_share < 1.0 {
        return Verdict::Recovering {
            share: s.admit_share,
            fallback: usable,
        };
    }
    match s.state {
        HealthState::Up => Verdict::Normal,
        // Down without `down_suppressed` does not admit, so it never gets here.
        HealthState::Degraded | HealthState::Down => Verdict::Slow,
    }
}

/// The backends whose logins `name` takes now as their fallback (fully or in part).
pub fn serving_for(name: &str, all: &[BackendStatus], table: &RoutingTable) -> Vec<String> {
    all.iter()
        .filter(|o| match assess(o, all, table) {
            Verdict::Fallback { fallback, .. } => fallback == name,
            Verdict::Recovering {
                fallback: Some(fallback),
                ..
            } => fallback == name,
            _ => false,
        })
        .map(|o| o.name.clone())
        .collect()
}
