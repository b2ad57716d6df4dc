//! Request routing for the admin listener (everything) and the public status listener
//! (`/` and its domain check only). Read-only endpoints need no token; the mutating ones
//! (`POST /backends/{name}/drain|undrain`, `/reload`, `/kick`) need the bearer token and
//! log what they changed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::AdminContext;
use super::auth::{AuthResult, TokenStore};
use super::http::{self, Resp};
use super::{status_json, status_page};
use crate::reload::Trigger;

mod kick;
mod plan;
mod sessions;
pub(crate) use kick::kick_query;

/// Auto-refresh period of the status page.
const PAGE_REFRESH_SECS: u32 = 30;

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `listen.admin`: every endpoint.
    Admin,
    /// `listen.status`: the public, read-only status page.
    Public,
}

/// What handlers share.
#[derive(Debug)]
pub struct AdminState {
    /// The proxy's handles.
    pub ctx: AdminContext,
    /// The admin token in force.
    pub tokens: Arc<TokenStore>,
    /// Set once the proxy's listeners are bound and the admin server runs.
    pub ready: AtomicBool,
    /// Domain checks per client address in the current minute.
    pub domain_checks: DomainChecks,
}

/// Counts the status page's domain checks per client address, per minute.
#[derive(Debug, Default)]
pub struct DomainChecks {
    map: dashmap::DashMap<std::net::IpAddr, (u32, std::time::Instant)>,
}

impl DomainChecks {
    /// Count a check by `ip`; false once it made `per_minute` in the current minute.
    pub fn allow(&self, ip: std::net::IpAddr, per_minute: u32) -> bool {
        let now = std::time::Instant::now();
        if self.map.len() > 100_000 {
            self.map
                .retain(|_, (_, t)| now.duration_since(*t) < Duration::from_secs(60));
        }
        let mut e = self.map.entry(ip.to_canonical()).or_insert((0, now));
        if now.duration_since(e.1) >= Duration::from_secs(60) {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
        e.0 <= per_minute
    }
}

impl AdminState {
    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.ctx.lifecycle.is_shutting_down()
    }

    /// `/metrics` with the state gauges refreshed first, and the series of backends that
    /// left the routing table dropped.
    pub fn metrics_text(&self) -> String {
        let statuses = self.ctx.health.snapshot();
        let not_after = self
            .ctx
            .runtime
            .snapshot()
            .tls
            .as_ref()
            .and_then(|t| t.not_after);
        let backends = statuses.iter().map(|s| s.name.clone()).collect();
        self.ctx
            .metrics
            .encode_for(backends, || self.ctx.gauges.refresh(&statuses, not_after))
    }
}

/// Handle one request.
pub async fn handle(
    state: Arc<AdminState>,
    surface: Surface,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let read = method == Method::GET || method == Method::HEAD;
    if surface == Surface::Public {
        return Ok(match path.as_str() {
            "/" if read => page(&state, &req, peer),
            "/" => http::method_not_allowed("GET, HEAD"),
            _ => http::error(StatusCode::NOT_FOUND, "not found"),
        });
    }
    let resp = match path.as_str() {
        "/metrics" if read => http::response(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics_text(),
        ),
        "/healthz" if read => http::text(StatusCode::OK, "ok\n"),
        "/readyz" if read => readyz(&state),
        "/status" if read => status(&state),
        "/sessions" if read => match authorize(&state, &req, peer) {
            None => kick::sessions_list(&state.ctx, &req),
            Some(refusal) => refusal,
        },
        "/sessions" => http::method_not_allowed("GET, HEAD"),
        "/routes/plan" if method != Method::POST => http::method_not_allowed("POST"),
        "/routes/plan" => match authorize(&state, &req, peer) {
            None => {
                let query = req.uri().query().map(str::to_string);
                let input = plan::PlanInput {
                    running: state.ctx.runtime.snapshot().routing.clone(),
                    kicks: &state.ctx.kicks,
                    guard: state.ctx.guard.mode(),
                    query: query.as_deref(),
                };
                plan::plan(input, req.into_body()).await
            }
            Some(refusal) => refusal,
        },
        "/" if read => page(&state, &req, peer),
        "/metrics" | "/healthz" | "/readyz" | "/status" | "/" => {
            http::method_not_allowed("GET, HEAD")
        }
        "/reload" | "/kick" | "/upgrade" if method != Method::POST => {
            http::method_not_allowed("POST")
        }
        "/upgrade" => match authorize(&state, &req, peer) {
            None => crate::upgrade::endpoint::upgrade(&state.ctx.lifecycle, peer).await,
            Some(refusal) => refusal,
        },
        "/reload" => match authorize(&state, &req, peer) {
            None if http::query_get(&http::query_pairs(req.uri().query()), "dry_run")
                == Some("true") =>
            {
                reload_preview(&state, peer).await
            }
            None => reload(&state, peer).await,
            Some(refusal) => refusal,
        },
        "/kick" => match authorize(&state, &req, peer) {
            None => kick::kick(&state.ctx, &req, peer),
            Some(refusal) => refusal,
        },
        p => match drain_target(p) {
            Some(_) if method != Method::POST => http::method_not_allowed("POST"),
            Some((name, drain)) => match authorize(&state, &req, peer) {
                None => {
                    let pairs = http::query_pairs(req.uri().query());
                    super::drains::set(&state.ctx, &name, drain, &pairs, peer).await
                }
                Some(refusal) => refusal,
            },
            None => http::error(StatusCode::NOT_FOUND, "not found"),
        },
    };
    Ok(resp)
}

/// `/backends/{name}/drain` → `(name, true)`, `/backends/{name}/undrain` → `(name, false)`.
pub(crate) fn drain_target(path: &str) -> Option<(String, bool)> {
    let rest = path.strip_prefix("/backends/")?;
    let (name, action) = rest.rsplit_once('/')?;
    let drain = match action {
        "drain" => true,
        "undrain" => false,
        _ => return None,
    };
    let name = http::decode(name);
    (!name.is_empty() && !name.contains('/')).then_some((name, drain))
}

/// `None` when the request carries the right token, else the refusal to send.
fn authorize(state: &AdminState, req: &Request<Incoming>, peer: SocketAddr) -> Option<Resp> {
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match state.tokens.check(header) {
        AuthResult::Allowed => None,
        AuthResult::NotConfigured => {
            tracing::warn!(%peer, path = req.uri().path(), "admin: refused, no token configured");
            Some(http::error(
                StatusCode::FORBIDDEN,
                "mutating admin endpoints are disabled: set admin.token_file in mailgate.yaml",
            ))
        }
        AuthResult::Denied => {
            tracing::warn!(%peer, path = req.uri().path(), "admin: refused, missing or wrong token");
            let mut r = http::error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <token from admin.token_file>)",
            );
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer realm=\"mailgate-admin\""),
            );
            Some(r)
        }
    }
}

fn readyz(state: &AdminState) -> Resp {
    if state.is_ready() {
        http::text(StatusCode::OK, "ready\n")
    } else if state.ctx.lifecycle.is_shutting_down() {
        http::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n",
        )
    } else {
        http::text(StatusCode::SERVICE_UNAVAILABLE, "not ready: starting\n")
    }
}

fn status(state: &AdminState) -> Resp {
    let statuses = state.ctx.health.snapshot();
    let rt = state.ctx.runtime.snapshot();
    let table = rt.routing.clone();
    let info = status_json::ProcessInfo {
        ready: state.is_ready(),
        shutting_down: state.ctx.lifecycle.is_shutting_down(),
        cert_not_after: rt.tls.as_ref().and_then(|t| t.not_after),
    };
    let mut doc = status_json::render(&statuses, &table, info);
    doc["state_file"] = super::drains::state_file_json(&state.ctx);
    let oauth = rt.front.oauth;
    crate::capabilities::extend_status(&mut doc, &state.ctx.capabilities, &table, oauth);
    http::json(StatusCode::OK, &doc)
}

fn page(state: &AdminState, req: &Request<Incoming>, peer: SocketAddr) -> Resp {
    let pairs = http::query_pairs(req.uri().query());
    // `admin:` settings of the snapshot in force: a reload changes them.
    let rt = state.ctx.runtime.snapshot();
    let domain = http::query_get(&pairs, "domain").filter(|_| rt.admin.domain_check);
    if domain.is_some_and(|d| !d.trim().is_empty())
        && !state
            .domain_checks
            .allow(peer.ip(), rt.admin.domain_checks_per_minute)
    {
        return http::error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many domain checks from your address; try again in a minute",
        );
    }
    let statuses = state.ctx.health.snapshot();
    let table = rt.routing.clone();
    let body = status_page::render(&status_page::PageInput {
        statuses: &statuses,
        table: &table,
        domain,
        show_addresses: rt.admin.show_addresses,
        domain_check: rt.admin.domain_check,
        refresh_secs: PAGE_REFRESH_SECS,
        now: SystemTime::now(),
    });
    http::html(body)
}

/// `POST /reload?dry_run=true`: what a reload would apply and which changes need a
/// restart; nothing changes.
async fn reload_preview(state: &AdminState, peer: SocketAddr) -> Resp {
    match state.ctx.reload.preview(Trigger::Admin).await {
        Ok(p) => {
            tracing::info!(%peer, needs_restart = p.needs_restart.len(), "admin: reload dry run");
            http::json(
                StatusCode::OK,
                &json!({
                    "ok": true,
                    "dry_run": true,
                    "would_apply": p.needs_restart.is_empty(),
                    "config_changes": p.config_changes,
                    "needs_restart": p.needs_restart,
                    "listener_changes": p.listener_changes,
                    "summary": p.routing_summary,
                }),
            )
        }
        Err(e) => http::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "ok": false, "dry_run": true, "reason": e.reason(), "error": e.to_string() }),
        ),
    }
}

async fn reload(state: &AdminState, peer: SocketAddr) -> Resp {
    // The reloader serialises this with SIGHUP and file changes and re-reads the token.
    match state.ctx.reload.reload(Trigger::Admin).await {
        Ok(report) => {
            tracing::info!(%peer, version = %report.routing_version, "admin: reload done");
            http::json(
                StatusCode::OK,
                &json!({
                    "ok": true,
                    "routing_version": report.routing_version,
                    "unchanged": report.unchanged,
                    "summary": report.summary,
                    "sessions_to_move": report.sessions_to_move,
                    "config_changes": report.config_changes,
                    "listener_changes": report.listener_changes,
                    "over_budget": report.over_budget,
                    "admin_token": if report.token_reloaded { "reloaded" } else { "kept (file unreadable)" },
                }),
            )
        }
        Err(e) => {
            tracing::warn!(%peer, "admin: reload failed");
            http::json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "ok": false, "reason": e.reason(), "error": e.to_string() }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_checks_are_limited_per_address_and_minute() {
        let c = DomainChecks::default();
        let a: std::net::IpAddr = "203.0.113.1".parse().expect("ip");
        let b: std::net::IpAddr = "203.0.113.2".parse().expect("ip");
        for _ in 0..3 {
            assert!(c.allow(a, 3));
        }
        assert!(!c.allow(a, 3), "the 4th within a minute is refused");
        assert!(c.allow(b, 3), "another address is not affected");
        let mapped: std::net::IpAddr = "::ffff:203.0.113.1".parse().expect("ip");
        assert!(!c.allow(mapped, 3), "v4-mapped is the same address");
    }

    #[test]
    fn drain_paths() {
        assert_eq!(
            drain_target("/backends/mail1/drain"),
            Some(("mail1".into(), true))
        );
        assert_eq!(
            drain_target("/backends/mail%2D1/undrain"),
            Some(("mail-1".into(), false))
        );
        assert_eq!(drain_target("/backends//drain"), None);
        assert_eq!(drain_target("/backends/a/b/drain"), None);
        assert_eq!(drain_target("/backends/mail1/stop"), None);
        assert_eq!(drain_target("/backend/mail1/drain"), None);
    }
}
