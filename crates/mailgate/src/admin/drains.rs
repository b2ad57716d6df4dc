//! `POST /backends/{name}/drain[?reason=...]` and `/undrain`: this instance's drain
//! override, written to `admin.state_file` after every change; and the `drain` object of
//! each backend on `/status` (which sources apply, with their reasons).
//!
//! The routing file's `drain: true` is not changed here: undraining through the API lifts
//! only the local drain, and the answer says when the file still drains the backend.

use std::net::SocketAddr;
use std::time::SystemTime;

use hyper::StatusCode;
use mailgate_config::MAX_DRAIN_REASON;
use mailgate_health::{DrainNote, DrainSources};
use serde_json::{Value, json};

use super::AdminContext;
use super::http::{self, Resp};

fn unix(t: SystemTime) -> Option<u64> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

fn note(n: &DrainNote) -> Value {
    json!({
        "reason": n.reason,
        "since_unix": n.since.and_then(unix),
    })
}

/// A backend's `drain` object on `/status`: `file` (the routing file's `drain: true`)
/// and `local` (this instance's admin API), each `null` or `{reason, since_unix}`.
pub fn sources_json(d: &DrainSources) -> Value {
    json!({
        "file": d.file.as_ref().map(note),
        "local": d.local.as_ref().map(note),
    })
}

/// The `state_file` object on `/status`: the file and its last problem, if any.
pub fn state_file_json(ctx: &AdminContext) -> Value {
    json!({
        "path": ctx.drains.path().map(|p| p.display().to_string()),
        "problem": ctx.drains.problem(),
    })
}

/// Check an operator's reason: one line, at most [`MAX_DRAIN_REASON`] characters.
fn reason(raw: Option<&str>) -> Result<Option<String>, String> {
    let Some(text) = raw.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().any(char::is_control) {
        return Err("reason must be one line without control characters".into());
    }
    if text.chars().count() > MAX_DRAIN_REASON {
        return Err(format!(
            "reason is longer than {MAX_DRAIN_REASON} characters"
        ));
    }
    Ok(Some(text.to_string()))
}

/// Drain or undrain `name` on this instance and keep it in the state file.
pub async fn set(
    ctx: &AdminContext,
    name: &str,
    drain: bool,
    pairs: &[(String, String)],
    peer: SocketAddr,
) -> Resp {
    let health = &ctx.health;
    let Some(before) = health.snapshot().into_iter().find(|s| s.name == name) else {
        return http::error(StatusCode::NOT_FOUND, format!("unknown backend {name:?}"));
    };
    let why = match reason(http::query_get(pairs, "reason")) {
        Ok(r) => r,
        Err(msg) => return http::error(StatusCode::BAD_REQUEST, msg),
    };
    let was_local = before.drains.local.is_some();
    let known = if drain {
        health.drain_local(name, why.clone())
    } else {
        health.undrain(name)
    };
    if !known {
        return http::error(StatusCode::NOT_FOUND, format!("unknown backend {name:?}"));
    }
    let store = ctx.drains.clone();
    let saved = tokio::task::spawn_blocking(move || store.save())
        .await
        .unwrap_or_else(|e| {
            Err(crate::state_file::StateFileError::Io {
                path: Default::default(),
                source: std::io::Error::other(e.to_string()),
            })
        });
    let after = health.snapshot().into_iter().find(|s| s.name == name);
    let drained = after.as_ref().is_some_and(|s| s.drained);
    let sources = after.map(|s| s.drains).unwrap_or_default();
    let action = if drain { "drain" } else { "undrain" };
    tracing::warn!(
        %peer,
        backend = name,
        action,
        reason = why.as_deref().unwrap_or(""),
        was_drained_here = was_local,
        drained,
        drained_by_file = sources.file.is_some(),
        changed = was_local != drain,
        "admin: backend drain flag set"
    );
    let (persisted, state_file_error) = match &saved {
        Ok(written) => (Value::Bool(*written), Value::Null),
        Err(e) => (Value::Bool(false), Value::String(e.to_string())),
    };
    let file_note = (!drain && sources.file.is_some())
        .then_some("still drained by the routing file (drain: true): edit the file to lift it");
    http::json(
        StatusCode::OK,
        &json!({
            "backend": name,
            "drained": drained,
            "changed": was_local != drain,
            "drain": sources_json(&sources),
            "persisted": persisted,
            "state_file_error": state_file_error,
            "note": file_note,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_short_line() {
        assert_eq!(reason(None), Ok(None));
        assert_eq!(reason(Some("  ")), Ok(None));
        assert_eq!(
            reason(Some(" ticket 42 ")),
            Ok(Some("ticket 42".to_string()))
        );
        assert!(reason(Some("a\nb")).is_err());
        assert!(reason(Some(&"x".repeat(201))).is_err());
        assert!(reason(Some(&"x".repeat(200))).is_ok());
    }

    #[test]
    fn sources_show_file_and_local_apart() {
        let d = DrainSources {
            file: Some(DrainNote {
                reason: Some("disk swap".into()),
                since: None,
            }),
            local: None,
        };
        let v = sources_json(&d);
        assert_eq!(v["file"]["reason"], "disk swap");
        assert!(v["file"]["since_unix"].is_null());
        assert!(v["local"].is_null());
    }
}
