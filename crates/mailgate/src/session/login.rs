//! The login step of a session: route the login in the session's routing snapshot, ask
//! admission, relay it to the backend and turn the outcome into a verdict for the client
//! (or a spliced session).

use std::net::SocketAddr;
use std::sync::Arc;

use mailgate_proto::{ClientAddr, ForwardInfo, LoginRequest, LoginVerdict};
use mailgate_routing::RoutingTable;
use tokio::time::sleep;

use super::Summary;
use crate::listener::ListenerKind;
use crate::server::Shared;
use crate::upstream::{RelayRequest, RelayTimeouts, Relayed};

pub(super) struct LoginContext<'a> {
    pub(super) shared: &'a Arc<Shared>,
    pub(super) table: &'a RoutingTable,
    pub(super) kind: ListenerKind,
    pub(super) peer: SocketAddr,
    pub(super) local: SocketAddr,
    pub(super) id: u64,
    pub(super) client_id: Vec<(String, Option<String>)>,
}

pub(super) enum LoginStep {
    /// The backend accepted: splice.
    Spliced(Relayed, crate::admission::SessionSlot),
    /// Answer the client and stay in pre-auth.
    Answer(LoginVerdict),
}

pub(super) async fn login(
    ctx: LoginContext<'_>,
    req: LoginRequest,
    summary: &mut Summary,
) -> LoginStep {
    let shared = ctx.shared;
    let protocol = ctx.kind.protocol();
    let backoff = shared.auth_failures.backoff(ctx.peer.ip());
    if !backoff.is_zero() {
        tracing::debug!(
            backoff_ms = backoff.as_millis() as u64,
            "login held back: many failed logins from this address"
        );
        sleep(backoff).await;
    }
    let user = req.routing_user().to_string();
    // A login without `@` is routed by `default_domain`: register that domain for kicks.
    summary.domain = user
        .rsplit_once('@')
        .map(|(_, d)| d)
        .or(ctx.table.default_domain())
        .map(|d| {
            // The same normal form as the routing table (lowercase, punycode), so that
            // kicks by domain and the logs agree with routing.
            mailgate_routing::normalize::normalize_domain(d)
                .map(|c| c.into_owned())
                .unwrap_or_else(|| d.to_ascii_lowercase())
        });
    let Some(route) = ctx.table.lookup(&user) else {
        // Unknown domain: the same answer (and delay) as a wrong password.
        shared.metrics.login("none", protocol.as_str(), "no_route");
        return LoginStep::Answer(LoginVerdict::AuthFailed);
    };
    let backend = route.backend.clone();
    summary.backend = Some(backend.name.clone());
    let permit = match shared.admission.admit(ctx.table, &backend, protocol) {
        Ok(p) => p,
        Err(reason) => {
            tracing::info!(backend = %backend.name, reason = reason.as_str(), "login refused: backend not admitting");
            shared
                .metrics
                .login(&backend.name, protocol.as_str(), "unavailable");
            return LoginStep::Answer(LoginVerdict::Unavailable(unavailable_message(&backend)));
        }
    };
    let backend = permit.backend().clone();
    summary.backend = Some(backend.name.clone());
    let limits = shared.limits();
    let forward = ForwardInfo {
        client: ClientAddr {
            ip: ctx.peer.ip().to_canonical().to_string(),
            port: ctx.peer.port(),
        },
        connected: ClientAddr {
            ip: ctx.local.ip().to_canonical().to_string(),
            port: ctx.local.port(),
        },
        session_id: format!("mg-{:x}", ctx.id),
        client_id: ctx.client_id,
    };
    let request = RelayRequest {
        backend: &backend,
        protocol,
        forward,
        client_addr: ctx.peer,
        local_addr: ctx.local,
        timeouts: RelayTimeouts {
            connect: limits.backend_connect_timeout,
            greeting: limits.backend_greeting_timeout,
            login: limits.backend_login_timeout,
        },
        limits: shared.proto_limits(),
    };
    match shared.upstream.relay(request, req).await {
        Ok(relayed) => {
            let accepted = matches!(relayed.verdict, LoginVerdict::Accepted(_));
            permit.report_verdict(relayed.latency, accepted);
            match relayed.verdict {
                LoginVerdict::Accepted(_) => {
                    shared.metrics.login(&backend.name, protocol.as_str(), "ok");
                    let domain = summary.domain.clone().unwrap_or_default();
                    // Kicks by user compare the normalised address (as routing does).
                    let user =
                        mailgate_routing::normalize::parse_login(&user, ctx.table.default_domain())
                            .map(|l| l.address())
                            .unwrap_or_else(|| user.to_ascii_lowercase());
                    let slot = permit.into_session(&shared.admission.kicks, &domain, &user);
                    LoginStep::Spliced(relayed, slot)
                }
                ref other => {
                    shared
                        .metrics
                        .login(&backend.name, protocol.as_str(), "rejected");
                    LoginStep::Answer(other.clone())
                }
            }
        }
        Err(err) => {
            tracing::warn!(backend = %backend.name, error = %err, kind = err.kind(), "login relay failed");
            shared
                .metrics
                .login(&backend.name, protocol.as_str(), "unavailable");
            permit.report_failure(&err);
            LoginStep::Answer(LoginVerdict::Unavailable(unavailable_message(&backend)))
        }
    }
}

fn unavailable_message(backend: &mailgate_routing::Backend) -> String {
    backend
        .unavailable_message
        .clone()
        .unwrap_or_else(|| "Mail server temporarily unavailable, please try again later".into())
}
