//! `POST /routes/plan`: the candidate routing file is the request body; the answer is the
//! move plan against the table that is *running* (crate::move_plan), or every parse and
//! validation error of the candidate with file, line and key, as `mailgate check` prints
//! them. Nothing is changed either way.

use std::path::PathBuf;
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use hyper::body::Incoming;
use mailgate_config::{ReloadGuard, RoutingTable};
use mailgate_health::KickRegistry;
use serde_json::json;

use super::sessions::flag;
use crate::admin::http::{self, Resp};
use crate::move_plan::{MovePlan, json as plan_json};

/// Largest candidate accepted (a 1M-domain routing file is about 40 MB).
pub(crate) const MAX_CANDIDATE_BYTES: usize = 128 * 1024 * 1024;

/// What the plan handler needs from the proxy.
pub(crate) struct PlanInput<'a> {
    /// The table in force.
    pub running: Arc<RoutingTable>,
    /// Live sessions.
    pub kicks: &'a KickRegistry,
    /// `reload_guard` in force.
    pub guard: ReloadGuard,
    /// The request's query string.
    pub query: Option<&'a str>,
}

/// Answer `POST /routes/plan` with the candidate in `body`.
pub(crate) async fn plan(input: PlanInput<'_>, body: Incoming) -> Resp {
    let pairs = http::query_pairs(input.query);
    let users = match flag(http::query_get(&pairs, "users"), "users") {
        Ok(u) => u,
        Err(m) => return http::error(StatusCode::BAD_REQUEST, m),
    };
    // The name the operator knows the candidate by (ctl sends its path), for diagnostics.
    let name = http::query_get(&pairs, "name")
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(255)
                .collect::<String>()
        })
        .filter(|n| !n.is_empty());
    let bytes = match Limited::new(body, MAX_CANDIDATE_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return http::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the candidate is unreadable or over {MAX_CANDIDATE_BYTES} bytes"),
            );
        }
    };
    let Ok(text) = String::from_utf8(bytes.to_vec()) else {
        return http::error(StatusCode::BAD_REQUEST, "the candidate is not UTF-8");
    };
    // Parsed as if it replaced the running file: relative password and CA files resolve
    // where a reload would find them.
    let path: PathBuf = input.running.source().to_path_buf();
    let parsed = tokio::task::spawn_blocking(move || RoutingTable::parse(&text, &path)).await;
    let loaded = match parsed {
        Ok(Ok(l)) => l,
        Ok(Err(errors)) => {
            let list: Vec<_> = errors
                .0
                .iter()
                .map(|d| plan_json::diagnostic(d, name.as_deref()))
                .collect();
            let text: Vec<String> = list
                .iter()
                .filter_map(|d| d["text"].as_str().map(str::to_string))
                .collect();
            return http::json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({
                    "valid": false,
                    "error": format!("the candidate is invalid ({} error(s)):\n{}", list.len(), text.join("\n")),
                    "errors": list,
                }),
            );
        }
        Err(e) => {
            return http::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("plan task failed: {e}"),
            );
        }
    };
    let warnings: Vec<_> = loaded
        .warnings
        .iter()
        .map(|d| plan_json::diagnostic(d, name.as_deref()))
        .collect();
    let candidate = loaded.table;
    let running = input.running;
    let kicks = input.kicks.clone();
    let guard = input.guard;
    let doc = tokio::task::spawn_blocking(move || {
        let plan = MovePlan::for_registry(&running, &candidate, &kicks, users);
        plan_json::plan(&plan, &running, &candidate, &warnings, guard, users)
    })
    .await;
    match doc {
        Ok(doc) => {
            tracing::info!(
                sessions_to_kick = %doc["sessions_to_kick"],
                over_budget = %doc["over_budget"],
                "admin: move plan computed"
            );
            http::json(StatusCode::OK, &doc)
        }
        Err(e) => http::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("plan task failed: {e}"),
        ),
    }
}
