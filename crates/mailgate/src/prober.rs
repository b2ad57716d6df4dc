//! The network prober: dials a backend the way sessions do (DNS, connect, implicit TLS)
//! and hands the stream to mailgate-health's probe conversation (greeting, CAPABILITY,
//! and with a probe account LOGIN + SELECT INBOX / USER+PASS + STAT).

use std::sync::Arc;

use mailgate_health::{
    BackendTarget, BoxStream, Conversation, ProbeAccount, ProbeError, ProbeFuture, ProbeOutcome,
    ProbeStep, Prober, TlsUpgrade, imap_probe, pop3_probe,
};
use mailgate_routing::{BackendTls, Routing};
use tokio::time::Instant;

use crate::metrics::{BackendLabel, Metrics};
use crate::upstream::{RelayError, RelayTimeouts, Upstream};
use mailgate_proto::Protocol;

/// Probes backends over the network.
#[derive(Debug)]
pub struct NetProber {
    routing: Arc<Routing>,
    upstream: Arc<Upstream>,
    metrics: Arc<Metrics>,
    timeout: std::time::Duration,
}

impl NetProber {
    /// A prober using the routing table in force and the shared dialer.
    pub fn new(
        routing: Arc<Routing>,
        upstream: Arc<Upstream>,
        metrics: Arc<Metrics>,
        timeout: std::time::Duration,
    ) -> Self {
        NetProber {
            routing,
            upstream,
            metrics,
            timeout,
        }
    }

    async fn run(&self, target: BackendTarget) -> ProbeOutcome {
        let started = Instant::now();
        let outcome = self.conversation(&target, started).await;
        // Every probe is timed, failed ones included: an unreachable backend shows up in
        // the histogram as slow probes, not as missing samples.
        self.metrics
            .probe_duration
            .get_or_create(&BackendLabel {
                backend: target.backend.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    async fn conversation(&self, target: &BackendTarget, started: Instant) -> ProbeOutcome {
        let table = self.routing.current();
        let Some(backend) = table.backend(&target.backend).cloned() else {
            return ProbeOutcome::failed(
                ProbeError::new(ProbeStep::Resolve, "backend not in the routing table"),
                started.elapsed(),
            );
        };
        let protocol = target.protocol;
        let timeouts = RelayTimeouts {
            connect: self.timeout,
            greeting: self.timeout,
            login: self.timeout,
        };
        let conn = match self.upstream.dial(&backend, protocol, timeouts, None).await {
            Ok(c) => c,
            Err(e) => {
                let step = match e {
                    RelayError::Resolve(_) => ProbeStep::Resolve,
                    RelayError::Tls(_) => ProbeStep::Tls,
                    _ => ProbeStep::Connect,
                };
                let err = match e {
                    RelayError::ConnectTimeout => ProbeError::timeout(step, self.timeout),
                    other => ProbeError::new(step, other.to_string()),
                };
                return ProbeOutcome::failed(err, started.elapsed());
            }
        };
        let starttls: Option<TlsUpgrade> = if backend.tls == BackendTls::StartTls {
            let upstream = self.upstream.clone();
            let backend = backend.clone();
            Some(Box::new(move |stream: BoxStream| {
                Box::pin(async move { upstream.tls_upgrade_boxed(&backend, stream).await })
            }))
        } else {
            None
        };
        let conv = Conversation {
            timeout: self.timeout,
            account: backend.probe.as_ref().map(|p| ProbeAccount {
                user: p.user.clone(),
                password: mailgate_proto::Secret::new(p.password.expose()),
            }),
            starttls,
        };
        let stream: BoxStream = Box::new(conn);
        match protocol {
            Protocol::Imap => imap_probe(stream, conv).await,
            Protocol::Pop3 => pop3_probe(stream, conv).await,
        }
    }
}

impl Prober for NetProber {
    fn probe(&self, target: &BackendTarget) -> ProbeFuture<'_> {
        let target = target.clone();
        Box::pin(self.run(target))
    }
}
