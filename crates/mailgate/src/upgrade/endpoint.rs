//! `POST /upgrade` (token-protected, `mailgate ctl upgrade`): start the binary at this
//! process's path and wait until it took over, or until it failed and this process
//! stays in charge.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;

use crate::admin::http::{self, Resp};
use crate::lifecycle::Lifecycle;

/// Longer than the new process's ready timeout (45 s), shorter than `mailgate ctl`'s
/// request timeout (60 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(55);

/// Ask for the upgrade and answer with its outcome.
pub async fn upgrade(lifecycle: &Lifecycle, peer: SocketAddr) -> Resp {
    if lifecycle.is_shutting_down() || lifecycle.is_handed_over() {
        return http::json(
            StatusCode::CONFLICT,
            &json!({ "ok": false, "error": "this process is shutting down or already handed over" }),
        );
    }
    if !lifecycle.upgrades_served() {
        return http::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ok": false, "error": "upgrades are not served by this process" }),
        );
    }
    let Some(outcome) = lifecycle.request_upgrade() else {
        return http::json(
            StatusCode::CONFLICT,
            &json!({ "ok": false, "error": "an upgrade is already in progress" }),
        );
    };
    tracing::info!(%peer, "admin: upgrade requested");
    match tokio::time::timeout(ANSWER_WITHIN, outcome).await {
        Ok(Ok(Ok(done))) => http::json(
            StatusCode::OK,
            &json!({ "ok": true, "new_pid": done.new_pid, "old_pid": done.old_pid }),
        ),
        Ok(Ok(Err(e))) if e == super::UpgradeError::Busy.to_string() => http::json(
            StatusCode::CONFLICT,
            &json!({ "ok": false, "error": e, "old_pid": std::process::id() }),
        ),
        Ok(Ok(Err(e))) => http::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "ok": false, "error": e, "old_pid": std::process::id() }),
        ),
        Ok(Err(_)) => http::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ok": false, "error": "upgrades are not served by this process" }),
        ),
        Err(_) => http::json(
            StatusCode::GATEWAY_TIMEOUT,
            &json!({ "ok": false, "error": "no outcome in time; see the log" }),
        ),
    }
}
