//! `GET /status`: every backend's health, drain flag, sessions and budget, last probes and
//! last transition, plus the routing file's version and load time, as JSON for operators
//! and `mailgate ctl status`. Served on the admin listener only (it names hosts).
//!
//! Next to the raw health fields each backend carries what a new login meets now, as the
//! status page tells customers (`page_state`, from [`availability`]), whether its
//! `fallback` takes its logins, and a `note` in words for the cases that need explaining
//! (down but kept admitted by the blast-radius guard, slow start, fallback in use).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailgate_config::RoutingTable;
use mailgate_health::{BackendStatus, HealthState, ProbeResult};
use serde_json::{Value, json};

use super::status_page::availability::{self, Verdict};

/// Process-wide facts shown next to the backends.
#[derive(Debug, Clone, Copy)]
pub struct ProcessInfo {
    /// `/readyz` would answer 200.
    pub ready: bool,
    /// Shutdown started.
    pub shutting_down: bool,
    /// Earliest notAfter of the served certificates (Unix seconds).
    pub cert_not_after: Option<i64>,
}

/// Unix seconds of a wall-clock time, to the millisecond.
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
        .unwrap_or(0.0)
}

/// RFC 3339 UTC, to the second.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn probe(p: &ProbeResult) -> Value {
    json!({
        "protocol": p.protocol.as_str(),
        "ok": p.ok,
        "latency_ms": ms(p.latency),
        "duration_ms": ms(p.duration),
        "at": rfc3339(p.at),
        "at_unix": unix(p.at),
        "error": p.error,
    })
}

/// The operator's note on a backend, in words; `None` when nothing needs explaining.
fn note(verdict: &Verdict, serving_for: &[String], all: &[BackendStatus]) -> Option<String> {
    let mut parts = Vec::new();
    match verdict {
        Verdict::DownAdmitted => {
            let down = all.iter().filter(|o| o.state == HealthState::Down).count();
            parts.push(format!(
                "down, but still admitted: refusing it would exceed \
                 health.max_auto_down_share ({down} of {} backends down)",
                all.len()
            ));
        }
        Verdict::Recovering { share, fallback } => {
            let rest = match fallback {
                Some(fb) => format!(", the rest go to its fallback {fb}"),
                None => ", the rest are refused".into(),
            };
            parts.push(format!(
                "slow start: admitting {:.0}% of logins{rest}",
                share * 100.0
            ));
        }
        Verdict::Fallback { cause, fallback } => parts.push(format!(
            "not admitting ({}): its logins go to its fallback {fallback}",
            cause.as_str()
        )),
        Verdict::Refused {
            cause,
            fallback: Some(fb),
        } => parts.push(format!(
            "not admitting ({}); its fallback {fb} does not admit either",
            cause.as_str()
        )),
        Verdict::Normal | Verdict::Slow | Verdict::Refused { fallback: None, .. } => {}
    }
    if !serving_for.is_empty() {
        parts.push(format!(
            "takes the logins of {} as their fallback",
            serving_for.join(", ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn backend(s: &BackendStatus, all: &[BackendStatus], table: &RoutingTable) -> Value {
    let def = table.backend(&s.name);
    let verdict = availability::assess(s, all, table);
    let serving_for = availability::serving_for(&s.name, all, table);
    let note = note(&verdict, &serving_for, all);
    let fallback_in_use = matches!(
        verdict,
        Verdict::Fallback { .. }
            | Verdict::Recovering {
                fallback: Some(_),
                ..
            }
    );
    json!({
        "name": s.name,
        "public_name": def.and_then(|b| b.public_name.clone()),
        "host": def.map(|b| b.host.clone()),
        "imap_port": def.and_then(|b| b.imap_port),
        "pop3_port": def.and_then(|b| b.pop3_port),
        "state": s.state.as_str(),
        "drained": s.drained,
        "drain": super::drains::sources_json(&s.drains),
        "down_suppressed": s.down_suppressed,
        "admitting": s.admitting,
        "at_budget": availability::at_budget(s),
        "page_state": verdict.as_str(),
        "accepts_logins": verdict.accepts_logins(),
        "fallback": availability::fallback_of(&s.name, table),
        "fallback_in_use": fallback_in_use,
        "serving_fallback_for": serving_for,
        "note": note,
        "sessions": s.sessions,
        "max_sessions": s.max_sessions,
        "logins_in_flight": s.logins_in_flight,
        "max_logins_in_flight": s.max_logins_in_flight,
        "admit_share": s.admit_share,
        "login_latency_ms": s.latency.map(ms),
        "last_probe": s.last_probe.as_ref().map(probe),
        "probes": s.probes.iter().map(probe).collect::<Vec<_>>(),
        "last_transition": s.last_transition.as_ref().map(|(at, reason)| json!({
            "at": rfc3339(*at),
            "at_unix": unix(*at),
            "reason": reason,
        })),
        "since": rfc3339(s.since),
        "since_unix": unix(s.since),
    })
}

/// The whole `/status` document.
pub fn render(statuses: &[BackendStatus], table: &RoutingTable, info: ProcessInfo) -> Value {
    let counts = table.counts();
    json!({
        "ready": info.ready,
        "shutting_down": info.shutting_down,
        "version": env!("CARGO_PKG_VERSION"),
        "routing": {
            "file": table.source().display().to_string(),
            "version": table.version_hex(),
            "loaded_at": rfc3339(table.loaded_at()),
            "loaded_at_unix": unix(table.loaded_at()),
            "routes": {
                "domains": counts.domains,
                "wildcards": counts.wildcards,
                "users": counts.users,
                "default": counts.default,
            },
        },
        "tls_certificate_not_after": info.cert_not_after.map(|t| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0)))
        }),
        "backends": statuses.iter().map(|s| backend(s, statuses, table)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::testutil::{down_suppressed, fallback_table, status, table};

    #[test]
    fn status_json_has_every_field_operators_need() {
        let t = table();
        let statuses = vec![
            status("mail1", HealthState::Up),
            status("mail2", HealthState::Down),
        ];
        let info = ProcessInfo {
            ready: true,
            shutting_down: false,
            cert_not_after: Some(1_900_000_000),
        };
        let v = render(&statuses, &t, info);
        assert_eq!(v["ready"], true);
        assert_eq!(v["routing"]["version"], t.version_hex());
        assert_eq!(v["routing"]["routes"]["domains"], 2);
        assert!(v["tls_certificate_not_after"].as_str().is_some());
        let b = &v["backends"][1];
        assert_eq!(b["name"], "mail2");
        assert_eq!(b["state"], "down");
        assert_eq!(b["drained"], false);
        assert_eq!(b["sessions"], 12);
        assert_eq!(b["max_sessions"], 1400);
        assert_eq!(b["logins_in_flight"], 1);
        assert_eq!(b["last_probe"]["ok"], false);
        assert_eq!(b["last_probe"]["latency_ms"], 4.5);
        assert_eq!(b["last_probe"]["error"], "greeting: timed out after 2s");
        assert_eq!(
            b["last_transition"]["reason"],
            "3 probe failures: greeting timed out"
        );
        assert_eq!(v["backends"][0]["public_name"], "Area <A>");
        assert_eq!(v["backends"][1]["public_name"], Value::Null);
        // serde_json escapes what needs escaping: the document parses back.
        let text = serde_json::to_string(&v).expect("serialise");
        let back: Value = serde_json::from_str(&text).expect("parse");
        assert_eq!(back["backends"][0]["public_name"], "Area <A>");
        assert_eq!(back["backends"].as_array().map(Vec::len), Some(2));
        // What a login meets, next to the raw fields.
        assert_eq!(v["backends"][0]["page_state"], "ok");
        assert_eq!(v["backends"][0]["note"], Value::Null);
        assert_eq!(b["page_state"], "not_accepting");
        assert_eq!(b["accepts_logins"], false);
        assert_eq!(b["at_budget"], false);
        assert_eq!(b["fallback"], Value::Null);
        assert_eq!(b["fallback_in_use"], false);
        assert_eq!(b["serving_fallback_for"], json!([]));
        assert_eq!(b["note"], Value::Null);
    }

    fn doc(statuses: &[BackendStatus], table: &RoutingTable) -> Value {
        let info = ProcessInfo {
            ready: true,
            shutting_down: false,
            cert_not_after: None,
        };
        render(statuses, table, info)
    }

    #[test]
    fn down_suppressed_backend_gets_an_operator_note() {
        let statuses = [status("mail1", HealthState::Up), down_suppressed("mail2")];
        let v = doc(&statuses, &table());
        let b = &v["backends"][1];
        // The raw fields stay as they were.
        assert_eq!(b["state"], "down");
        assert_eq!(b["down_suppressed"], true);
        assert_eq!(b["admitting"], true);
        assert_eq!(b["page_state"], "down_admitted");
        assert_eq!(b["accepts_logins"], true);
        assert_eq!(
            b["note"],
            "down, but still admitted: refusing it would exceed health.max_auto_down_share \
             (1 of 2 backends down)"
        );
        assert_eq!(v["backends"][0]["note"], Value::Null);
    }

    #[test]
    fn fallback_in_use_is_reported_on_both_backends() {
        let statuses = [
            status("mail1", HealthState::Up),
            status("mail2", HealthState::Down),
        ];
        let v = doc(&statuses, &fallback_table());
        let (primary, fb) = (&v["backends"][1], &v["backends"][0]);
        assert_eq!(primary["fallback"], "mail1");
        assert_eq!(primary["fallback_in_use"], true);
        assert_eq!(primary["admitting"], false);
        assert_eq!(primary["accepts_logins"], true);
        assert_eq!(primary["page_state"], "fallback");
        assert_eq!(
            primary["note"],
            "not admitting (down): its logins go to its fallback mail1"
        );
        assert_eq!(fb["fallback"], "mail2");
        assert_eq!(fb["fallback_in_use"], false);
        assert_eq!(fb["serving_fallback_for"], json!(["mail2"]));
        assert_eq!(fb["note"], "takes the logins of mail2 as their fallback");

        // Both refusing: the fallback is configured but not in use, and the note says so.
        let mut full = status("mail1", HealthState::Up);
        full.max_sessions = Some(13);
        let v = doc(
            &[full, status("mail2", HealthState::Down)],
            &fallback_table(),
        );
        let (mail1, mail2) = (&v["backends"][0], &v["backends"][1]);
        assert_eq!(mail1["at_budget"], true);
        assert_eq!(mail1["page_state"], "full");
        assert_eq!(mail2["fallback_in_use"], false);
        assert_eq!(mail2["accepts_logins"], false);
        assert_eq!(
            mail2["note"],
            "not admitting (down); its fallback mail1 does not admit either"
        );
        assert_eq!(
            mail1["note"],
            "not admitting (at its session budget); its fallback mail2 does not admit either"
        );
    }

    #[test]
    fn slow_start_note_names_the_share_and_where_the_rest_goes() {
        let mut ramp = status("mail1", HealthState::Up);
        ramp.admit_share = 0.25;
        let statuses = [ramp, status("mail2", HealthState::Up)];
        let v = doc(&statuses, &table());
        assert_eq!(v["backends"][0]["page_state"], "recovering");
        assert_eq!(
            v["backends"][0]["note"],
            "slow start: admitting 25% of logins, the rest are refused"
        );
        let v = doc(&statuses, &fallback_table());
        assert_eq!(v["backends"][0]["fallback_in_use"], true);
        assert_eq!(
            v["backends"][0]["note"],
            "slow start: admitting 25% of logins, the rest go to its fallback mail2"
        );
        assert_eq!(v["backends"][1]["serving_fallback_for"], json!(["mail1"]));
    }
}
