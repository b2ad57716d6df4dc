//! `mailgate ctl status`: `GET /status` as a table for a terminal.

use std::fmt::Write as _;

use serde_json::Value;

use super::views::s;

/// The DRAINED column: `file` (the routing file's `drain: true`), `local` (this
/// instance's admin API), `both`, `no`; `yes` from a server that does not say which.
fn drained(b: &Value) -> &'static str {
    let file = b["drain"]["file"].is_object();
    let local = b["drain"]["local"].is_object();
    match (b["drained"] == true, file, local) {
        (false, _, _) => "no",
        (true, true, true) => "both",
        (true, true, false) => "file",
        (true, false, true) => "local",
        (true, false, false) => "yes",
    }
}

/// `/status` as a table for a terminal.
pub fn status_table(v: &Value) -> String {
    let mut out = String::new();
    let r = &v["routing"];
    let _ = writeln!(
        out,
        "routing: {} version {} loaded {}{}",
        s(&r["file"]),
        s(&r["version"]),
        s(&r["loaded_at"]),
        if v["shutting_down"] == true {
            "  [SHUTTING DOWN]"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:<14} {:<9} {:<7} {:>11} {:>6}  {:<12} SINCE",
        "BACKEND", "STATE", "DRAINED", "SESSIONS", "LOGINS", "LAST PROBE"
    );
    for b in v["backends"].as_array().into_iter().flatten() {
        let mut state = s(&b["state"]);
        if b["down_suppressed"] == true {
            state.push('*');
        }
        let sessions = match b["max_sessions"].as_u64() {
            Some(max) => format!("{}/{max}", s(&b["sessions"])),
            None => s(&b["sessions"]),
        };
        let p = &b["last_probe"];
        let probe_ok = p["ok"] == true;
        let probe = match p["latency_ms"].as_f64() {
            _ if p.is_null() => "-".to_string(),
            Some(ms) if probe_ok => format!("ok {ms:.1} ms"),
            _ => "FAILED".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<14} {:<9} {:<7} {:>11} {:>6}  {:<12} {}",
            s(&b["name"]),
            state,
            drained(b),
            sessions,
            s(&b["logins_in_flight"]),
            probe,
            s(&b["since"]),
        );
        // Who drained it and why: the routing file (every instance), this instance.
        for (source, words) in [
            ("file", "drained in the routing file"),
            ("local", "drained here"),
        ] {
            let d = &b["drain"][source];
            if d.is_object() {
                let why = d["reason"].as_str().unwrap_or("no reason given");
                let _ = writeln!(out, "{:<14} {words}: {why}", "");
            }
        }
        // What the numbers do not say: kept admitted while down, fallback in use, ...
        if let Some(note) = b["note"].as_str() {
            let _ = writeln!(out, "{:<14} note: {note}", "");
        }
        // Why, for anything that is not plainly healthy.
        if b["state"] != "up" || (!p.is_null() && !probe_ok) {
            let t = &b["last_transition"];
            if !t.is_null() {
                let _ = writeln!(out, "{:<14} reason: {}", "", s(&t["reason"]));
            }
            if !p.is_null() && !probe_ok {
                let _ = writeln!(out, "{:<14} last probe: {}", "", s(&p["error"]));
            }
        }
    }
    // What is offered before login, and where the backends' capabilities differ.
    out.push_str(&crate::capabilities::status_lines(v));
    out
}
