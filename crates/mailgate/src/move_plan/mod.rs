//! The move planner (issue #14): what a candidate routing table would do to the sessions
//! that are live now, compared with the table that is *running* (not the file on disk).
//!
//! For every move — a domain, wildcard, user override or the default whose backend
//! changes — it counts the spliced sessions a reload would kick (exactly the reloader's
//! rule: [`RoutingTable::route_changed`] on the session's routing user), and for every
//! backend the budget after the move: live sessions, minus those kicked away, plus those
//! that reconnect to it, against the candidate's `max_sessions`. A backend is *over
//! budget* when sessions move onto it and it would end above its budget; lowering a
//! budget below the live count alone moves nobody and is not flagged.
//!
//! Used by `POST /routes/plan` / `mailgate ctl plan` and by the reload guard ([`guard`]).
//! Budgets are per mailgate instance, like the admission that enforces them.

pub mod guard;
pub mod json;

use std::collections::BTreeMap;

use mailgate_config::{RouteRule, RoutingDiff, RoutingTable};
use mailgate_health::{KickRegistry, SessionInfo};

/// What kind of routing key moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveKind {
    /// A `users:` override (`local@domain`).
    User,
    /// An exact `domains:` entry.
    Domain,
    /// A `*.suffix` rule.
    Wildcard,
    /// `default:`.
    Default,
}

impl MoveKind {
    /// Label for JSON and text.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveKind::User => "user",
            MoveKind::Domain => "domain",
            MoveKind::Wildcard => "wildcard",
            MoveKind::Default => "default",
        }
    }
}

/// One key whose backend changes, and the live sessions it moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMove {
    /// What kind of key.
    pub kind: MoveKind,
    /// The key: domain, `*.suffix`, `local@domain` or `default`.
    pub key: String,
    /// Backend before (`None`: no route).
    pub old: Option<String>,
    /// Backend after (`None`: no route; its sessions cannot log in again).
    pub new: Option<String>,
    /// Live sessions a reload would kick for this move.
    pub sessions: usize,
    /// Those sessions by the backend they are spliced to now (a fallback shows here).
    pub from: BTreeMap<String, usize>,
    /// Those sessions by routing user; filled only when users were asked for.
    pub users: BTreeMap<String, usize>,
}

/// A backend's budget after the move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetAfter {
    /// Backend name.
    pub backend: String,
    /// Spliced sessions now.
    pub live: usize,
    /// Kicked sessions whose new route is this backend.
    pub moving_in: usize,
    /// Sessions spliced here now that a reload would kick.
    pub moving_out: usize,
    /// The candidate's budget (`None`: unlimited, or the backend is not in the candidate).
    pub max_sessions: Option<u32>,
    /// The backend is in the candidate table.
    pub in_candidate: bool,
}

impl BudgetAfter {
    /// Sessions once the kicked ones have reconnected.
    pub fn after(&self) -> usize {
        (self.live + self.moving_in).saturating_sub(self.moving_out)
    }

    /// `max_sessions - after` (negative: over); `None` without a budget.
    pub fn headroom(&self) -> Option<i64> {
        self.max_sessions
            .map(|m| i64::from(m) - i64::try_from(self.after()).unwrap_or(i64::MAX))
    }

    /// Sessions move onto this backend and it would end above its budget.
    pub fn over_budget(&self) -> bool {
        self.moving_in > 0 && self.headroom().is_some_and(|h| h < 0)
    }

    /// One line for logs and errors, e.g. `mail2: 180 live + 40 in - 0 out = 220 > max_sessions 200`.
    pub fn describe(&self) -> String {
        let budget = match self.max_sessions {
            Some(m) => format!("max_sessions {m}"),
            None => "no max_sessions".into(),
        };
        let cmp = if self.over_budget() { ">" } else { "vs" };
        format!(
            "{}: {} live + {} in - {} out = {} {cmp} {budget}",
            self.backend,
            self.live,
            self.moving_in,
            self.moving_out,
            self.after()
        )
    }
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovePlan {
    /// The routing diff (running → candidate).
    pub diff: RoutingDiff,
    /// Every key that moves, with the sessions it kicks (diff order: domains, users, default).
    pub moves: Vec<PlannedMove>,
    /// Every backend of either table, or with live sessions, in name order.
    pub budgets: Vec<BudgetAfter>,
    /// Spliced sessions now.
    pub live_sessions: usize,
    /// Sessions a reload would kick.
    pub sessions_to_kick: usize,
}

/// Builds a plan one session at a time (under the kick registry's lock).
struct Planner<'a> {
    running: &'a RoutingTable,
    candidate: &'a RoutingTable,
    users: bool,
    diff: RoutingDiff,
    moves: Vec<PlannedMove>,
    index: BTreeMap<String, usize>,
    budgets: BTreeMap<String, BudgetAfter>,
    live: usize,
    kicked: usize,
}

fn rank(rule: &RouteRule) -> (u8, usize) {
    match rule {
        RouteRule::UserOverride => (3, 0),
        RouteRule::Domain => (2, 0),
        RouteRule::Wildcard(w) => (1, w.len()),
        RouteRule::Default => (0, 0),
    }
}

fn route_name(t: &RoutingTable, user: &str) -> Option<(String, RouteRule)> {
    t.lookup(user).map(|r| (r.backend.name.clone(), r.rule))
}

impl<'a> Planner<'a> {
    /// Without `with_diff` only the moves that kick sessions are listed (and no diff):
    /// the reload guard needs the budgets, not the full comparison of two large tables.
    fn new(
        running: &'a RoutingTable,
        candidate: &'a RoutingTable,
        users: bool,
        with_diff: bool,
    ) -> Self {
        let diff = if with_diff {
            running.diff(candidate)
        } else {
            RoutingDiff::default()
        };
        let mut p = Planner {
            running,
            candidate,
            users,
            diff: RoutingDiff::default(),
            moves: Vec::new(),
            index: BTreeMap::new(),
            budgets: BTreeMap::new(),
            live: 0,
            kicked: 0,
        };
        for m in &diff.domains {
            let kind = if m.key.starts_with("*.") {
                MoveKind::Wildcard
            } else {
                MoveKind::Domain
            };
            p.push(kind, &m.key, m.old.clone(), m.new.clone());
        }
        for m in &diff.users {
            p.push(MoveKind::User, &m.key, m.old.clone(), m.new.clone());
        }
        if let Some((o, n)) = &diff.default {
            p.push(MoveKind::Default, "default", o.clone(), n.clone());
        }
        p.diff = diff;
        for b in running.backends() {
            p.budget(&b.name);
        }
        for b in candidate.backends() {
            p.budget(&b.name);
        }
        p
    }

    fn push(&mut self, kind: MoveKind, key: &str, old: Option<String>, new: Option<String>) {
        self.index.insert(key.to_string(), self.moves.len());
        self.moves.push(PlannedMove {
            kind,
            key: key.to_string(),
            old,
            new,
            sessions: 0,
            from: BTreeMap::new(),
            users: BTreeMap::new(),
        });
    }

    fn budget(&mut self, name: &str) -> &mut BudgetAfter {
        let candidate = self.candidate;
        self.budgets.entry(name.to_string()).or_insert_with(|| {
            let b = candidate.backend(name);
            BudgetAfter {
                backend: name.to_string(),
                live: 0,
                moving_in: 0,
                moving_out: 0,
                max_sessions: b.and_then(|b| b.max_sessions),
                in_candidate: b.is_some(),
            }
        })
    }

    /// The key that explains a session's move: the more specific of the rules that route
    /// it before and after (a user override over a domain over a wildcard over default).
    fn attribute(
        &self,
        s: &SessionInfo,
        old: &Option<(String, RouteRule)>,
        new: &Option<(String, RouteRule)>,
    ) -> (MoveKind, String) {
        let rule = match (old, new) {
            (Some((_, o)), Some((_, n))) => {
                if rank(n) > rank(o) {
                    n
                } else {
                    o
                }
            }
            (Some((_, r)), None) | (None, Some((_, r))) => r,
            (None, None) => &RouteRule::Default,
        };
        match rule {
            RouteRule::UserOverride => (MoveKind::User, s.user.clone()),
            RouteRule::Domain => {
                let d = if s.domain.is_empty() {
                    s.user.rsplit_once('@').map_or("", |(_, d)| d)
                } else {
                    s.domain.as_str()
                };
                (MoveKind::Domain, d.to_ascii_lowercase())
            }
            RouteRule::Wildcard(w) => (MoveKind::Wildcard, w.to_string()),
            RouteRule::Default => (MoveKind::Default, "default".into()),
        }
    }

    fn add(&mut self, s: &SessionInfo) {
        self.live += 1;
        self.budget(&s.backend).live += 1;
        // The reloader's rule, so the plan kicks exactly what a reload would.
        if !self.running.route_changed(self.candidate, &s.user) {
            return;
        }
        self.kicked += 1;
        let old = route_name(self.running, &s.user);
        let new = route_name(self.candidate, &s.user);
        let (kind, key) = self.attribute(s, &old, &new);
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                let (o, n) = (
                    old.as_ref().map(|r| r.0.clone()),
                    new.as_ref().map(|r| r.0.clone()),
                );
                self.push(kind, &key, o, n);
                self.moves.len() - 1
            }
        };
        let users = self.users;
        if let Some(m) = self.moves.get_mut(i) {
            m.sessions += 1;
            *m.from.entry(s.backend.clone()).or_default() += 1;
            if users {
                *m.users.entry(s.user.clone()).or_default() += 1;
            }
        }
        self.budget(&s.backend).moving_out += 1;
        if let Some((target, _)) = new {
            self.budget(&target).moving_in += 1;
        }
    }

    fn finish(self) -> MovePlan {
        MovePlan {
            diff: self.diff,
            moves: self.moves,
            budgets: self.budgets.into_values().collect(),
            live_sessions: self.live,
            sessions_to_kick: self.kicked,
        }
    }
}

impl MovePlan {
    /// The plan for `sessions` (tests, and callers that hold a copy of the sessions).
    pub fn compute<'s>(
        running: &RoutingTable,
        candidate: &RoutingTable,
        sessions: impl IntoIterator<Item = &'s SessionInfo>,
        users: bool,
    ) -> MovePlan {
        let mut p = Planner::new(running, candidate, users, true);
        for s in sessions {
            p.add(s);
        }
        p.finish()
    }

    /// The plan for the sessions registered in `kicks` now. Users are listed only when
    /// `users`.
    pub fn for_registry(
        running: &RoutingTable,
        candidate: &RoutingTable,
        kicks: &KickRegistry,
        users: bool,
    ) -> MovePlan {
        let mut p = Planner::new(running, candidate, users, true);
        kicks.for_each(|s| p.add(s));
        p.finish()
    }

    /// The budgets after the move for the sessions in `kicks`, without the routing diff:
    /// `moves` holds only the keys that kick sessions, `diff` is empty (the reload guard).
    pub fn budgets_for_registry(
        running: &RoutingTable,
        candidate: &RoutingTable,
        kicks: &KickRegistry,
    ) -> MovePlan {
        let mut p = Planner::new(running, candidate, false, false);
        kicks.for_each(|s| p.add(s));
        p.finish()
    }

    /// The backends the move would push over their budget.
    pub fn over_budget(&self) -> impl Iterator<Item = &BudgetAfter> {
        self.budgets.iter().filter(|b| b.over_budget())
    }

    /// A backend's budget row.
    pub fn budget(&self, name: &str) -> Option<&BudgetAfter> {
        self.budgets.iter().find(|b| b.backend == name)
    }
}

#[cfg(test)]
mod tests;
