//! The login step of a session: route the login in the session's routing snapshot, ask
//! admission, replay it through the backend client, and turn the backend's answer into
//! what the client gets — a spliced session, or a verdict to relay.
//!
//! The backend's answer is one of four kinds (docs/protocol.md): accepted, refused
//! credentials, temporary trouble, or no verdict at all (unreachable, timed out, garbage).
//! Only refused credentials carry the failed-login penalties; temporary trouble of the
//! whole backend and failures without a verdict count against its health and are retried
//! once on the backend's fallback, if it has one that admits.

use std::net::SocketAddr;
use std::sync::Arc;

use mailgate_health::PassiveSignal;
use mailgate_proto::{ClientAddr, ForwardInfo, LoginRequest, LoginVerdict, TempScope};
use mailgate_config::{Backend, ForwardClient, RoutingTable};
use tokio::time::sleep;

use super::Summary;
use crate::admission::Permit;
use crate::backend::{Deadlines, LoggedIn, Target};
use crate::listener::ListenerKind;
use crate::metrics::LoginResult;
use crate::server::Shared;

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
    Spliced(LoggedIn, crate::admission::SessionSlot),
    /// Answer the client and stay in pre-auth.
    Answer(LoginVerdict),
}

/// What one attempt on one backend came to.
enum Attempt {
    Done(LoginStep),
    /// The backend failed in a way that allows the fallback; answer with this if there is none.
    Retry(LoginVerdict),
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
            mailgate_config::normalize::normalize_domain(d)
                .map(|c| c.into_owned())
                .unwrap_or_else(|| d.to_ascii_lowercase())
        });
    let Some(route) = ctx.table.lookup(&user) else {
        // Unknown domain: the same answer (and delay) as a wrong password.
        shared
            .metrics
            .login("none", protocol.as_str(), LoginResult::NoRoute);
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
                .login(&backend.name, protocol.as_str(), LoginResult::Unavailable);
            return LoginStep::Answer(LoginVerdict::Unavailable(unavailable_message(&backend)));
        }
    };
    // Kicks by user compare the normalised address (as routing does).
    let kick_user = mailgate_config::normalize::parse_login(&user, ctx.table.default_domain())
        .map(|l| l.address())
        .unwrap_or_else(|| user.to_ascii_lowercase());
    let first = attempt(&ctx, permit, req.clone(), summary, &kick_user).await;
    let answer = match first {
        Attempt::Done(step) => return step,
        Attempt::Retry(answer) => answer,
    };
    let Some(permit) = shared
        .admission
        .admit_fallback(ctx.table, &backend, protocol)
    else {
        return LoginStep::Answer(answer);
    };
    tracing::info!(backend = %backend.name, fallback = %permit.backend().name, "retrying the login on the fallback backend");
    match attempt(&ctx, permit, req, summary, &kick_user).await {
        Attempt::Done(step) => step,
        Attempt::Retry(answer) => LoginStep::Answer(answer),
    }
}

/// Relay the login to the permit's backend once.
async fn attempt(
    ctx: &LoginContext<'_>,
    permit: Permit,
    req: LoginRequest,
    summary: &mut Summary,
    kick_user: &str,
) -> Attempt {
    let shared = ctx.shared;
    let protocol = ctx.kind.protocol();
    let backend = permit.backend().clone();
    summary.backend = Some(backend.name.clone());
    let target = Target {
        backend: &backend,
        protocol,
        proxy: Some((ctx.peer, ctx.local)),
        forward: (backend.forward_client == ForwardClient::Id).then(|| forward_info(ctx)),
        limits: shared.proto_limits(),
        deadlines: Deadlines::from_limits(&shared.config.limits),
    };
    let count = |result| {
        shared
            .metrics
            .login(&backend.name, protocol.as_str(), result)
    };
    match shared.backends.login(target, req).await {
        Ok(done) => {
            permit.observe_duration(done.total);
            match done.verdict {
                LoginVerdict::Accepted(_) => {
                    permit.report(PassiveSignal::LoginLatency(done.latency));
                    count(LoginResult::Ok);
                    let domain = summary.domain.clone().unwrap_or_default();
                    let slot = permit.into_session(&shared.admission.kicks, &domain, kick_user);
                    Attempt::Done(LoginStep::Spliced(done, slot))
                }
                LoginVerdict::Temporary(reply, TempScope::Backend) => {
                    tracing::info!(backend = %backend.name, "backend refused the login temporarily");
                    permit.report(PassiveSignal::TemporaryFailure);
                    count(LoginResult::TempFailure);
                    Attempt::Retry(LoginVerdict::Temporary(reply, TempScope::Backend))
                }
                LoginVerdict::Temporary(reply, TempScope::Mailbox) => {
                    // Mailbox locked, per-user limits: the backend is fine.
                    permit.report(PassiveSignal::Answered);
                    count(LoginResult::TempFailure);
                    Attempt::Done(LoginStep::Answer(LoginVerdict::Temporary(
                        reply,
                        TempScope::Mailbox,
                    )))
                }
                other => {
                    permit.report(PassiveSignal::Answered);
                    count(LoginResult::Rejected);
                    Attempt::Done(LoginStep::Answer(other))
                }
            }
        }
        Err(err) => {
            tracing::warn!(backend = %backend.name, error = %err, kind = err.kind(), "login relay failed");
            count(LoginResult::BackendError);
            if let Some(signal) = err.signal() {
                permit.report(signal);
            }
            let answer = LoginVerdict::Unavailable(unavailable_message(&backend));
            if err.retry_elsewhere() {
                Attempt::Retry(answer)
            } else {
                Attempt::Done(LoginStep::Answer(answer))
            }
        }
    }
}

fn forward_info(ctx: &LoginContext<'_>) -> ForwardInfo {
    ForwardInfo {
        client: ClientAddr {
            ip: ctx.peer.ip().to_canonical().to_string(),
            port: ctx.peer.port(),
        },
        connected: ClientAddr {
            ip: ctx.local.ip().to_canonical().to_string(),
            port: ctx.local.port(),
        },
        session_id: format!("mg-{:x}", ctx.id),
        client_id: ctx.client_id.clone(),
    }
}

fn unavailable_message(backend: &Backend) -> String {
    backend
        .unavailable_message
        .clone()
        .unwrap_or_else(|| "Mail server temporarily unavailable, please try again later".into())
}
