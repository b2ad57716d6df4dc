//! The login step of a session: route the login in the session's routing snapshot, ask
//! admission, replay it through the backend client, and turn the backend's answer into
//! what the client gets — a spliced session, or a verdict to relay.
//!
//! The backend's answer is one of four kinds (docs/protocol.md): accepted, refused
//! credentials, temporary trouble, or no verdict at all (unreachable, timed out, garbage).
//! Only refused credentials carry the failed-login penalties; temporary trouble of the
//! whole backend and failures without a verdict count against its health and are retried
//! once on the backend's fallback, if it has one that admits.

use std::fmt::Write as _;
use std::net::IpAddr;

use mailgate_config::{Backend, ForwardClient};
use mailgate_health::PassiveSignal;
use mailgate_proto::login::PROXY_TTL;
use mailgate_proto::notices::DEFAULT_UNAVAILABLE;
use mailgate_proto::{ClientAddr, ForwardInfo, LoginRequest, LoginVerdict, TempScope};
use tokio::time::{Instant, sleep, sleep_until};

use super::Session;
use crate::admission::Permit;
use crate::backend::{Deadlines, LoggedIn, ProxyClient, Target};
use crate::metrics::LoginResult;

// One value per login, moved once or twice and then taken apart: boxing the large variant
// would cost an allocation per login to save a copy of a few hundred bytes.
#[allow(clippy::large_enum_variant)]
pub(super) enum LoginStep {
    /// The backend accepted: splice.
    Spliced(LoggedIn, crate::admission::SessionSlot),
    /// Answer the client and stay in pre-auth.
    Answer(LoginVerdict),
}

/// What one attempt on one backend came to.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    Done(LoginStep),
    /// The backend failed in a way that allows the fallback; answer with this if there is none.
    Retry(LoginVerdict),
}

impl Session<'_> {
    /// Route, admit and relay one login. Every failed login — wrong password, unknown
    /// domain alike — is answered no earlier than `auth_failure_delay` after the command
    /// was processed, or when the backend answered if that took longer: text and timing
    /// then match, and an outsider cannot tell which domains are hosted.
    pub(super) async fn login(
        &mut self,
        req: LoginRequest,
        client_id: Vec<(String, Option<String>)>,
        client_tls: Option<&'static str>,
    ) -> LoginStep {
        let ctx = self.ctx;
        // Normalised once (lowercase, punycode, default_domain): the same form routing,
        // kicks, back-off and the logs use. A master user's login (`user*master`, or PLAIN
        // with an authzid) routes and counts as the mailbox user's; the login itself is
        // replayed unchanged, so the backend checks the master password.
        let table = self.rt.routing.clone();
        let routed = table.route_identity(req.authzid(), req.login_name());
        if routed.form.on_behalf() {
            tracing::debug!(form = ?routed.form, "login for a mailbox by another identity (master user)");
        }
        let backoff = ctx.clients().backoff(self.peer.ip(), &routed.address);
        if !backoff.is_zero() {
            tracing::debug!(
                backoff_ms = backoff.as_millis() as u64,
                "login held back: many failed logins from this address or for this user"
            );
            sleep(backoff).await;
        }
        let started = Instant::now();
        let step = self.route(req, client_id, client_tls, routed).await;
        if matches!(
            step,
            LoginStep::Answer(LoginVerdict::Rejected(_) | LoginVerdict::AuthFailed)
        ) {
            self.summary.logins_failed += 1;
            let address = self.summary.user.clone().unwrap_or_default();
            ctx.clients().failed_login(self.peer.ip(), &address);
            sleep_until(started + self.rt.limits.auth_failure_delay).await;
        }
        step
    }

    async fn route(
        &mut self,
        req: LoginRequest,
        client_id: Vec<(String, Option<String>)>,
        client_tls: Option<&'static str>,
        routed: mailgate_config::RoutedLogin,
    ) -> LoginStep {
        let ctx = self.ctx;
        let protocol = self.kind.protocol();
        let table = self.rt.routing.clone();
        self.summary.domain = routed.domain.clone();
        self.summary.user = Some(routed.address.clone());
        let Some(route) = routed.route else {
            // Unknown domain: the same answer (and delay) as a wrong password.
            ctx.admission()
                .count("none", protocol, LoginResult::NoRoute);
            return LoginStep::Answer(LoginVerdict::AuthFailed);
        };
        let backend = route.backend.clone();
        self.summary.backend = Some(backend.name.clone());
        let permit = match ctx.admission().admit(&table, &backend, protocol) {
            Ok(p) => p,
            Err(reason) => {
                tracing::info!(backend = %backend.name, reason = reason.as_str(), "login refused: backend not admitting");
                ctx.admission()
                    .count(&backend.name, protocol, LoginResult::Unavailable);
                return LoginStep::Answer(LoginVerdict::Unavailable(unavailable_message(&backend)));
            }
        };
        let first = self
            .attempt(permit, req.clone(), &client_id, client_tls, &routed.address)
            .await;
        let answer = match first {
            Attempt::Done(step) => return step,
            Attempt::Retry(answer) => answer,
        };
        let Some(permit) = ctx.admission().admit_fallback(&table, &backend, protocol) else {
            return LoginStep::Answer(answer);
        };
        tracing::info!(backend = %backend.name, fallback = %permit.backend().name, "retrying the login on the fallback backend");
        match self
            .attempt(permit, req, &client_id, client_tls, &routed.address)
            .await
        {
            Attempt::Done(step) => step,
            Attempt::Retry(answer) => LoginStep::Answer(answer),
        }
    }

    /// Relay the login to the permit's backend once.
    async fn attempt(
        &mut self,
        permit: Permit,
        req: LoginRequest,
        client_id: &[(String, Option<String>)],
        client_tls: Option<&'static str>,
        kick_user: &str,
    ) -> Attempt {
        let ctx = self.ctx;
        let protocol = self.kind.protocol();
        let backend = permit.backend().clone();
        self.summary.backend = Some(backend.name.clone());
        let session_id = Self::session_id(self.id);
        // Built for the backend that uses it, and moved into the target, not copied.
        let forward = (backend.forward_client == ForwardClient::Id).then(|| {
            self.forward_info(client_id.to_vec(), client_tls.is_some(), session_id.clone())
        });
        let target = Target {
            backend: &backend,
            protocol,
            proxy: Some(ProxyClient {
                client: self.peer,
                local: self.local,
                tls: client_tls,
                session_id,
            }),
            forward,
            limits: self.rt.proto_limits.clone(),
            deadlines: Deadlines::from_limits(&self.rt.limits),
        };
        match ctx.backends().login(target, req).await {
            Ok(done) => {
                permit.observe_duration(done.total);
                match done.verdict {
                    LoginVerdict::Accepted(_) => {
                        permit.report(PassiveSignal::LoginLatency(done.latency));
                        permit.count(LoginResult::Ok);
                        let domain = self.summary.domain.clone().unwrap_or_default();
                        let slot = permit.into_session(&domain, kick_user);
                        Attempt::Done(LoginStep::Spliced(done, slot))
                    }
                    LoginVerdict::Temporary(reply, TempScope::Backend) => {
                        tracing::info!(backend = %backend.name, "backend refused the login temporarily");
                        permit.report(PassiveSignal::TemporaryFailure);
                        permit.count(LoginResult::TempFailure);
                        Attempt::Retry(LoginVerdict::Temporary(reply, TempScope::Backend))
                    }
                    LoginVerdict::Temporary(reply, TempScope::Mailbox) => {
                        // Mailbox locked, per-user limits: the backend is fine.
                        permit.report(PassiveSignal::Answered);
                        permit.count(LoginResult::TempFailure);
                        Attempt::Done(LoginStep::Answer(LoginVerdict::Temporary(
                            reply,
                            TempScope::Mailbox,
                        )))
                    }
                    other => {
                        permit.report(PassiveSignal::Answered);
                        permit.count(LoginResult::Rejected);
                        Attempt::Done(LoginStep::Answer(other))
                    }
                }
            }
            Err(err) => {
                tracing::warn!(backend = %backend.name, error = %err, kind = err.kind(), "login relay failed");
                permit.count(LoginResult::BackendError);
                if let Some(signal) = err.signal() {
                    permit.report(signal);
                }
                // Every failure without a verdict may be tried on the fallback.
                Attempt::Retry(LoginVerdict::Unavailable(unavailable_message(&backend)))
            }
        }
    }

    /// The session id told to backends (`x-session-id`, XCLIENT `SESSION=`, PROXY v2
    /// `PP2_TYPE_UNIQUE_ID`).
    fn session_id(id: u64) -> String {
        let mut s = String::with_capacity("mg-".len() + 16);
        // Writing into a String cannot fail.
        let _ = write!(s, "{}", crate::net::text::SessionId(id));
        s
    }

    /// What mailgate vouches for towards the backend: only its own knowledge of the session.
    /// The client's `ID` goes along, but only its RFC 2971 fields reach the backend
    /// (mailgate-proto's `id_command`); a client's `x-proxy-ttl` is never believed: nothing
    /// in front of mailgate can vouch for one, so every session starts at `PROXY_TTL`.
    fn forward_info(
        &self,
        client_id: Vec<(String, Option<String>)>,
        client_tls: bool,
        session_id: String,
    ) -> ForwardInfo {
        ForwardInfo {
            client: ClientAddr {
                ip: ip_text(self.peer.ip()),
                port: self.peer.port(),
            },
            connected: ClientAddr {
                ip: ip_text(self.local.ip()),
                port: self.local.port(),
            },
            session_id,
            client_tls,
            proxy_ttl: PROXY_TTL,
            client_id,
        }
    }
}

/// An address as text (IPv4-mapped IPv6 as IPv4), in one allocation of the longest
/// address's size instead of growing the string while it is written.
fn ip_text(ip: IpAddr) -> String {
    let mut s = String::with_capacity(INET6_ADDRSTRLEN);
    crate::net::text::push_ip(&mut s, ip);
    s
}

/// The longest IP address text (an IPv6 address with an embedded IPv4 one).
const INET6_ADDRSTRLEN: usize = 45;

fn unavailable_message(backend: &Backend) -> String {
    backend
        .unavailable_message
        .clone()
        .unwrap_or_else(|| DEFAULT_UNAVAILABLE.into())
}
