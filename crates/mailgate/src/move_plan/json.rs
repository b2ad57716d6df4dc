//! The plan as JSON (`POST /routes/plan`), and a candidate's diagnostics in the same
//! shape as `mailgate check` prints them (file, line, key, message).

use mailgate_config::{Diagnostic, ReloadGuard, RoutingTable};
use serde_json::{Value, json};

use super::{BudgetAfter, MovePlan};

/// One diagnostic as JSON; `file` is shown as `name` when given (the candidate's name on
/// the operator's machine rather than the path it was resolved against).
pub fn diagnostic(d: &Diagnostic, name: Option<&str>) -> Value {
    let file = name.map_or_else(|| d.file.display().to_string(), str::to_string);
    let mut shown = d.clone();
    shown.file = file.clone().into();
    json!({
        "file": file,
        "line": d.line,
        "key": d.key,
        "message": d.message,
        "text": shown.to_string(),
    })
}

fn budget(b: &BudgetAfter) -> Value {
    json!({
        "name": b.backend,
        "sessions": b.live,
        "moving_in": b.moving_in,
        "moving_out": b.moving_out,
        "sessions_after": b.after(),
        "max_sessions": b.max_sessions,
        "headroom": b.headroom(),
        "over_budget": b.over_budget(),
        "in_candidate": b.in_candidate,
    })
}

/// What a reload of the candidate would do under `guard`.
pub fn verdict(plan: &MovePlan, guard: ReloadGuard) -> &'static str {
    match (plan.over_budget().next().is_some(), guard) {
        (false, _) => "apply",
        (true, ReloadGuard::Warn) => "apply with a warning",
        (true, ReloadGuard::Strict) => "refuse",
    }
}

/// The plan document.
pub fn plan(
    plan: &MovePlan,
    running: &RoutingTable,
    candidate: &RoutingTable,
    warnings: &[Value],
    guard: ReloadGuard,
    users: bool,
) -> Value {
    let moves: Vec<Value> = plan
        .moves
        .iter()
        .map(|m| {
            let target = m.new.as_deref().and_then(|n| plan.budget(n)).map(budget);
            let mut v = json!({
                "kind": m.kind.as_str(),
                "key": m.key,
                "from": m.old,
                "to": m.new,
                "sessions": m.sessions,
                "sessions_by_backend": m.from,
                "target": target,
            });
            if users {
                v["users"] = json!(m.users);
            }
            v
        })
        .collect();
    let changes: Vec<String> = plan.diff.to_string().lines().map(str::to_string).collect();
    json!({
        "valid": true,
        "running_version": running.version_hex(),
        "candidate_version": candidate.version_hex(),
        "unchanged": running.version() == candidate.version(),
        "summary": plan.diff.summary(),
        "changes": changes,
        "warnings": warnings,
        "live_sessions": plan.live_sessions,
        "sessions_to_kick": plan.sessions_to_kick,
        "moves": moves,
        "backends": plan.budgets.iter().map(budget).collect::<Vec<_>>(),
        "over_budget": plan.over_budget().map(|b| b.backend.clone()).collect::<Vec<_>>(),
        "reload_guard": guard.as_str(),
        "reload_would": verdict(plan, guard),
    })
}
