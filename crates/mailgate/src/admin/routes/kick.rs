//! `POST /kick` (also as a dry run) and `GET /sessions`: which spliced sessions a
//! selector names, closing them spread over a window, or only counting them.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use mailgate_health::KickSelector;
use serde_json::json;

use super::sessions;
use crate::admin::AdminContext;
use crate::admin::http::{self, Resp};

/// Longest kick window accepted.
const MAX_KICK_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A parsed `POST /kick` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KickQuery {
    /// `backend`, `domain` or `user`.
    pub key: &'static str,
    /// The value as given (trimmed).
    pub value: String,
    /// What to kick: domains and users in the routing table's normal form.
    pub selector: KickSelector,
    /// `window=`, when given.
    pub window: Option<Duration>,
    /// `dry_run=true`: say what would close, close nothing.
    pub dry_run: bool,
    /// `users=true` (dry runs): name the users.
    pub users: bool,
}

/// Parse the query of `POST /kick`; the error is the text of the 400 answer.
pub(crate) fn kick_query(query: Option<&str>) -> Result<KickQuery, String> {
    let pairs = http::query_pairs(query);
    let mut selectors = Vec::new();
    for key in ["backend", "domain", "user"] {
        if let Some(v) = http::query_get(&pairs, key).map(str::trim) {
            if v.is_empty() {
                return Err(format!("{key}= is empty"));
            }
            selectors.push((key, v.to_string()));
        }
    }
    let (key, value) = match selectors.as_slice() {
        [(k, v)] => (*k, v.clone()),
        _ => return Err("name exactly one of backend=, domain=, user=".into()),
    };
    let window = match http::query_get(&pairs, "window") {
        None => None,
        Some(w) => match humantime::parse_duration(w.trim()) {
            Ok(d) if d <= MAX_KICK_WINDOW => Some(d),
            Ok(_) => return Err("window= is at most 24h".into()),
            Err(e) => return Err(format!("window=: {e}")),
        },
    };
    let selector = match key {
        "backend" => KickSelector::Backend(value.clone()),
        // The same normal form sessions register with (lowercase, punycode).
        "domain" => match mailgate_config::normalize::normalize_domain(&value) {
            Some(d) => KickSelector::Domain(d.into_owned()),
            None => return Err("domain=: not a valid domain".into()),
        },
        _ => match mailgate_config::normalize::parse_login(&value, None) {
            Some(login) => KickSelector::User(login.address()),
            None => return Err("user=: not a valid login".into()),
        },
    };
    let dry_run = sessions::flag(http::query_get(&pairs, "dry_run"), "dry_run")?;
    let users = sessions::flag(http::query_get(&pairs, "users"), "users")?;
    Ok(KickQuery {
        key,
        value,
        selector,
        window,
        dry_run,
        users,
    })
}

/// `GET /sessions[?users=true]`.
pub(super) fn sessions_list(ctx: &AdminContext, req: &Request<Incoming>) -> Resp {
    let pairs = http::query_pairs(req.uri().query());
    let users = match sessions::flag(http::query_get(&pairs, "users"), "users") {
        Ok(u) => u,
        Err(m) => return http::error(StatusCode::BAD_REQUEST, m),
    };
    let mut tally = mailgate_health::kick::SessionTally::default();
    ctx.kicks.for_each(|s| tally.add(s, users));
    let table = ctx.runtime.snapshot().routing.clone();
    http::json(StatusCode::OK, &sessions::listing(&tally, &table, users))
}

pub(super) fn kick(ctx: &AdminContext, req: &Request<Incoming>, peer: SocketAddr) -> Resp {
    let KickQuery {
        key,
        value,
        selector,
        window,
        dry_run,
        users,
    } = match kick_query(req.uri().query()) {
        Ok(q) => q,
        Err(message) => return http::error(StatusCode::BAD_REQUEST, message),
    };
    let window = window.unwrap_or_else(|| ctx.health.settings().kick_window);
    if dry_run {
        let table = ctx.runtime.snapshot().routing.clone();
        if key == "backend" && table.backend(&value).is_none() {
            return http::error(StatusCode::NOT_FOUND, format!("unknown backend {value:?}"));
        }
        let tally = ctx.kicks.tally(&selector, users);
        return http::json(
            StatusCode::OK,
            &json!({
                "dry_run": true,
                "would_close": tally.total,
                "selector": key,
                "value": value,
                "window_secs": window.as_secs_f64(),
                "backends": sessions::backends(&tally, None, users),
            }),
        );
    }
    let n = ctx.kicks.kick(&selector, window);
    if n == 0 && key == "backend" && ctx.runtime.snapshot().routing.backend(&value).is_none() {
        return http::error(StatusCode::NOT_FOUND, format!("unknown backend {value:?}"));
    }
    // Users are logged by domain only.
    let shown = match key {
        "user" => value
            .rsplit_once('@')
            .map(|(_, d)| format!("*@{d}"))
            .unwrap_or_else(|| "*".into()),
        _ => value.clone(),
    };
    tracing::warn!(%peer, selector = key, value = %shown, sessions = n, window = ?window, "admin: kick scheduled");
    http::json(
        StatusCode::OK,
        &json!({
            "dry_run": false,
            "scheduled": n,
            "selector": key,
            "value": value,
            "window_secs": window.as_secs_f64(),
        }),
    )
}
