//! The network prober: talks to a backend with the same backend client as client logins
//! (resolve, connect, PROXY v2 header, TLS, greeting, capabilities, STARTTLS, login), then
//! hands the logged-in stream to mailgate-health's after-login steps (`SELECT INBOX` /
//! `STAT`, then goodbye). Without a probe account it stops before the login and says
//! goodbye. Every step runs under `health.timeout`.

use std::sync::{Arc, OnceLock};

use mailgate_health::{
    BackendTarget, BoxStream, ProbeError, ProbeFuture, ProbeOutcome, ProbeStep, Prober,
};
use mailgate_proto::{Credentials, Limits, LoginRequest, LoginVerdict};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::backend::{BackendClient, BackendError, Deadlines, Step, Target};
use crate::capabilities::{self, CapabilityMetrics};
use crate::metrics::{BackendLabel, MetricGroup, latency_histogram, names};
use crate::runtime::RuntimeHandle;
use mailgate_config::RoutingTable;
use mailgate_health::CapabilityBook;
use mailgate_proto::{Capabilities, Protocol};

/// `backend_probe_duration_seconds`: every probe, failed ones included.
#[derive(Debug)]
pub struct ProbeMetrics {
    duration: Family<BackendLabel, Histogram>,
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        ProbeMetrics {
            duration: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl ProbeMetrics {
    /// Time one probe of `backend`.
    pub fn observe(&self, backend: &str, secs: f64) {
        self.duration
            .get_or_create(&BackendLabel {
                backend: backend.to_string(),
            })
            .observe(secs);
    }
}

impl MetricGroup for ProbeMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            names::BACKEND_PROBE_DURATION,
            "Duration of active health probes",
            self.duration.clone(),
        );
    }

    fn forget_backend(&self, backend: &str) {
        self.duration.remove(&BackendLabel {
            backend: backend.into(),
        });
    }
}

/// Probes backends over the network.
#[derive(Debug)]
pub struct NetProber {
    runtime: RuntimeHandle,
    backends: Arc<BackendClient>,
    capabilities: OnceLock<(CapabilityBook, Arc<CapabilityMetrics>)>,
    metrics: Arc<ProbeMetrics>,
}

impl NetProber {
    /// Record every probe's capability lists in `book` (and its metrics); set once.
    pub fn set_capabilities(&self, book: CapabilityBook, metrics: Arc<CapabilityMetrics>) {
        let _ = self.capabilities.set((book, metrics));
    }

    fn record(
        &self,
        table: &RoutingTable,
        target: &BackendTarget,
        pre_login: Option<Capabilities>,
        post_login: Option<Capabilities>,
    ) {
        if let Some((book, metrics)) = self.capabilities.get() {
            let seen = capabilities::Seen {
                pre_login,
                post_login,
            };
            capabilities::observe(book, metrics, table, &target.backend, target.protocol, seen);
        }
    }

    /// A prober using the routing table in force and the shared backend client.
    pub fn new(
        runtime: RuntimeHandle,
        backends: Arc<BackendClient>,
        metrics: Arc<ProbeMetrics>,
    ) -> Self {
        NetProber {
            runtime,
            backends,
            capabilities: OnceLock::new(),
            metrics,
        }
    }

    async fn run(&self, target: BackendTarget) -> ProbeOutcome {
        let started = Instant::now();
        let outcome = self.conversation(&target, started).await;
        // Every probe is timed, failed ones included: an unreachable backend shows up in
        // the histogram as slow probes, not as missing samples.
        self.metrics
            .observe(&target.backend, started.elapsed().as_secs_f64());
        outcome
    }

    async fn conversation(&self, target: &BackendTarget, started: Instant) -> ProbeOutcome {
        let snapshot = self.runtime.snapshot();
        let table = snapshot.routing.clone();
        // `health.timeout` of the snapshot in force: a reload changes it for the next probe.
        let timeout = snapshot.probe_timeout;
        let Some(backend) = table.backend(&target.backend).cloned() else {
            return ProbeOutcome::failed(
                ProbeError::new(ProbeStep::Resolve, "backend not in the routing table"),
                started.elapsed(),
            );
        };
        let protocol = target.protocol;
        let t = Target {
            backend: &backend,
            protocol,
            proxy: None,
            forward: None,
            limits: Limits::default(),
            deadlines: Deadlines::uniform(timeout),
        };
        let failed = |e: ProbeError| ProbeOutcome::failed(e, started.elapsed());
        let Some(account) = &backend.probe else {
            let ready = match self.backends.ready(t).await {
                Ok(r) => r,
                Err(e) => return failed(probe_error(&e)),
            };
            let conn = ready.conn;
            self.record(&table, target, ready.capabilities, None);
            let ready_after = started.elapsed();
            let stream: BoxStream = Box::new(conn);
            return match mailgate_health::logout(stream, protocol, timeout).await {
                Ok(slowest) => ProbeOutcome::ok(slowest.max(ready_after), started.elapsed()),
                Err(e) => failed(e),
            };
        };
        let login = LoginRequest {
            credentials: Credentials::Password {
                authzid: None,
                authcid: account.user.clone(),
                password: account.password.clone(),
            },
        };
        let capa_limit = t.deadlines.answer;
        let mut done = match self.backends.login_with_capabilities(t, login).await {
            Ok(d) => d,
            Err(e) => return failed(probe_error(&e)),
        };
        let pre_login = done.capabilities.take();
        match &done.verdict {
            LoginVerdict::Accepted(reply) => {
                let post_login = match protocol {
                    Protocol::Imap => Capabilities::from_imap_login(reply),
                    Protocol::Pop3 => {
                        let remaining = std::mem::take(&mut done.remaining);
                        let (caps, rest) =
                            capabilities::pop3_post_login(&mut done.conn, remaining, capa_limit)
                                .await;
                        done.remaining = rest;
                        caps
                    }
                };
                self.record(&table, target, pre_login, post_login);
            }
            LoginVerdict::Rejected(reply) | LoginVerdict::Temporary(reply, _) => {
                self.record(&table, target, pre_login, None);
                let status = String::from_utf8_lossy(&reply.status);
                let short: String = status.chars().take(80).collect();
                return failed(ProbeError::new(
                    ProbeStep::Login,
                    format!("refused: {short}"),
                ));
            }
            LoginVerdict::AuthFailed | LoginVerdict::Unavailable(_) => {
                return failed(ProbeError::new(ProbeStep::Login, "refused"));
            }
        }
        let stream: BoxStream = Box::new(done.conn);
        match mailgate_health::after_login(stream, done.remaining, protocol, timeout).await {
            Ok(slowest) => ProbeOutcome::ok(slowest.max(done.latency), started.elapsed()),
            Err(e) => failed(e),
        }
    }
}

/// The probe's view of a failed backend conversation: the step and what happened.
fn probe_error(e: &BackendError) -> ProbeError {
    let step = match e.step {
        Step::Resolve => ProbeStep::Resolve,
        Step::Connect | Step::ProxyHeader => ProbeStep::Connect,
        Step::Tls => ProbeStep::Tls,
        Step::Greeting => ProbeStep::Greeting,
        Step::Setup => ProbeStep::Capability,
        Step::Login => ProbeStep::Login,
    };
    let text = e.to_string();
    let what = text
        .split_once(": ")
        .map(|(_, w)| w.to_string())
        .unwrap_or(text);
    ProbeError::new(step, what)
}

impl Prober for NetProber {
    fn probe(&self, target: &BackendTarget) -> ProbeFuture<'_> {
        let target = target.clone();
        Box::pin(self.run(target))
    }
}
