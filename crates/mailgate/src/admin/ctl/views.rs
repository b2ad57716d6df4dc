//! Terminal output of `mailgate ctl plan`, `ctl sessions` and `ctl kick --dry-run`, from
//! the JSON of `POST /routes/plan`, `GET /sessions` and `POST /kick?…&dry_run=true`.

use std::fmt::Write as _;

use serde_json::Value;

/// A JSON value as text: strings unquoted, null as `-`.
pub fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn budget(v: &Value) -> String {
    match v.as_u64() {
        Some(m) => m.to_string(),
        None => "-".into(),
    }
}

/// `users` of a plan move or a session listing: `[{user, sessions}]` or `{user: n}`.
fn user_lines(out: &mut String, users: &Value, indent: &str) {
    match users {
        Value::Object(m) => {
            for (u, n) in m {
                let _ = writeln!(out, "{indent}{u}  {n}");
            }
        }
        Value::Array(a) => {
            for u in a {
                let _ = writeln!(out, "{indent}{}  {}", s(&u["user"]), u["sessions"]);
            }
        }
        _ => {}
    }
}

/// The plan, for people.
pub fn plan(v: &Value, file: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan: {file} against the running routing table (version {} -> {}{})",
        s(&v["running_version"]),
        s(&v["candidate_version"]),
        if v["unchanged"] == true {
            ", identical"
        } else {
            ""
        }
    );
    for w in v["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "warning: {}", s(&w["text"]));
    }
    let _ = writeln!(out, "changes: {}", s(&v["summary"]));
    for c in v["changes"].as_array().into_iter().flatten() {
        let c = s(c);
        let shown_as_move =
            c.starts_with("domain ") || c.starts_with("user ") || c.starts_with("default:");
        if !shown_as_move && c != "no changes" {
            let _ = writeln!(out, "  {c}");
        }
    }
    let moves = v["moves"].as_array().cloned().unwrap_or_default();
    if !moves.is_empty() {
        let _ = writeln!(
            out,
            "{:<36} {:<10} {:<10} {:>8}  {:>13} {:>9}",
            "MOVE", "FROM", "TO", "SESSIONS", "TARGET AFTER", "HEADROOM"
        );
        for m in &moves {
            let t = &m["target"];
            let after = if t.is_null() {
                "-".to_string()
            } else {
                format!("{}/{}", t["sessions_after"], budget(&t["max_sessions"]))
            };
            let over = if t["over_budget"] == true {
                "  OVER BUDGET"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "{:<36} {:<10} {:<10} {:>8}  {:>13} {:>9}{over}",
                format!("{} {}", s(&m["kind"]), s(&m["key"])),
                s(&m["from"]),
                s(&m["to"]),
                s(&m["sessions"]),
                after,
                s(&t["headroom"]),
            );
            user_lines(&mut out, &m["users"], "    ");
        }
    }
    let _ = writeln!(
        out,
        "{:<14} {:>8} {:>5} {:>5} {:>6} {:>6} {:>9}",
        "BACKEND", "SESSIONS", "IN", "OUT", "AFTER", "MAX", "HEADROOM"
    );
    for b in v["backends"].as_array().into_iter().flatten() {
        let mut note = String::new();
        if b["over_budget"] == true {
            note.push_str("  OVER BUDGET");
        }
        if b["in_candidate"] == false {
            note.push_str("  (not in the candidate)");
        }
        let _ = writeln!(
            out,
            "{:<14} {:>8} {:>5} {:>5} {:>6} {:>6} {:>9}{note}",
            s(&b["name"]),
            s(&b["sessions"]),
            s(&b["moving_in"]),
            s(&b["moving_out"]),
            s(&b["sessions_after"]),
            budget(&b["max_sessions"]),
            s(&b["headroom"]),
        );
    }
    let _ = writeln!(
        out,
        "sessions to kick: {} of {} live",
        v["sessions_to_kick"], v["live_sessions"]
    );
    let over: Vec<String> = v["over_budget"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    let _ = writeln!(
        out,
        "over budget: {}; a reload would {} (reload_guard: {})",
        if over.is_empty() {
            "none".to_string()
        } else {
            over.join(", ")
        },
        s(&v["reload_would"]),
        s(&v["reload_guard"]),
    );
    out
}

/// The candidate's errors (answer 422), one per line as `mailgate check` prints them.
pub fn plan_errors(v: &Value) -> Option<String> {
    let errors = v["errors"].as_array()?;
    let mut out = String::new();
    for e in errors {
        let _ = writeln!(out, "error: {}", s(&e["text"]));
    }
    let _ = writeln!(out, "{} error(s)", errors.len());
    Some(out)
}

fn backends(out: &mut String, list: &Value) {
    for b in list.as_array().into_iter().flatten() {
        let max = match b["max_sessions"].as_u64() {
            Some(m) => format!(" (max_sessions {m})"),
            None => String::new(),
        };
        let gone = if b["in_routing_table"] == false {
            " (not in the routing table)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{}: {} session(s){max}{gone}",
            s(&b["name"]),
            b["sessions"]
        );
        for d in b["domains"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  {}  {}", s(&d["domain"]), d["sessions"]);
            user_lines(out, &d["users"], "    ");
        }
    }
}

/// `GET /sessions`, for people.
pub fn sessions(v: &Value) -> String {
    let mut out = String::new();
    backends(&mut out, &v["backends"]);
    let _ = writeln!(out, "total: {} session(s)", v["total"]);
    out
}

/// `POST /kick?…&dry_run=true`, for people.
pub fn dry_run(v: &Value) -> String {
    let mut out = format!(
        "dry run: {} session(s) of {} {} would close over {}s; nothing was closed\n",
        v["would_close"],
        s(&v["selector"]),
        s(&v["value"]),
        v["window_secs"]
    );
    backends(&mut out, &v["backends"]);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn plan_shows_moves_budgets_and_the_verdict() {
        let v = json!({
            "running_version": "aa", "candidate_version": "bb", "unchanged": false,
            "summary": "1 domains and 0 users move, default unchanged, backends +0 -0 ~1",
            "changes": ["domain example.com: mail1 -> mail2", "backend changed: mail2 (max_sessions)"],
            "warnings": [],
            "moves": [{"kind": "domain", "key": "example.com", "from": "mail1", "to": "mail2",
                       "sessions": 3, "users": {"a@example.com": 2},
                       "target": {"sessions_after": 5, "max_sessions": 4, "headroom": -1, "over_budget": true}}],
            "backends": [{"name": "mail2", "sessions": 2, "moving_in": 3, "moving_out": 0,
                          "sessions_after": 5, "max_sessions": 4, "headroom": -1,
                          "over_budget": true, "in_candidate": true}],
            "sessions_to_kick": 3, "live_sessions": 8,
            "over_budget": ["mail2"], "reload_would": "refuse", "reload_guard": "strict",
        });
        let out = plan(&v, "new.yaml");
        assert!(
            out.contains("backend changed: mail2 (max_sessions)"),
            "{out}"
        );
        assert!(
            !out.contains("  domain example.com: mail1"),
            "moves are in the table: {out}"
        );
        let row = out
            .lines()
            .find(|l| l.starts_with("domain example.com"))
            .expect(&out);
        assert!(
            row.contains("mail1") && row.contains("5/4") && row.contains("OVER BUDGET"),
            "{row}"
        );
        assert!(out.contains("    a@example.com  2"), "{out}");
        let mail2 = out.lines().find(|l| l.starts_with("mail2 ")).expect(&out);
        assert_eq!(
            mail2,
            "mail2                 2     3     0      5      4        -1  OVER BUDGET"
        );
        assert!(out.contains("sessions to kick: 3 of 8 live"), "{out}");
        assert!(
            out.contains("over budget: mail2; a reload would refuse (reload_guard: strict)"),
            "{out}"
        );
    }

    #[test]
    fn errors_and_listings() {
        let e = json!({"errors": [{"text": "new.yaml:3: domains.x: unknown backend \"nope\""}]});
        assert_eq!(
            plan_errors(&e).as_deref(),
            Some("error: new.yaml:3: domains.x: unknown backend \"nope\"\n1 error(s)\n")
        );
        let v = json!({"total": 2, "backends": [{"name": "mail1", "sessions": 2, "max_sessions": 10,
            "in_routing_table": true,
            "domains": [{"domain": "example.com", "sessions": 2}]}]});
        assert_eq!(
            sessions(&v),
            "mail1: 2 session(s) (max_sessions 10)\n  example.com  2\ntotal: 2 session(s)\n"
        );
    }
}
