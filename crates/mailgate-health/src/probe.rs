//! The probe interface: what the scheduler asks a prober to do and what it gets back.
//!
//! The real network prober lives in the server (it needs DNS, TLS and the routing
//! snapshot to find a backend's address and probe account); this crate only defines the
//! trait, runs it on schedule (`scheduler.rs`) and offers the protocol conversations over
//! any connected stream (`conversation.rs`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use crate::machine::fmt_duration;
use crate::settings::Protocol;

/// One thing to probe: a backend, by name, over one protocol. The prober looks up address,
/// TLS mode and probe account in its own routing snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendTarget {
    /// Backend name from the routing file.
    pub backend: String,
    /// Protocol to probe.
    pub protocol: Protocol,
}

impl BackendTarget {
    /// A target.
    pub fn new(backend: impl Into<String>, protocol: Protocol) -> Self {
        BackendTarget {
            backend: backend.into(),
            protocol,
        }
    }
}

/// The steps of a probe conversation, for failure reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeStep {
    /// Name resolution.
    Resolve,
    /// TCP connect.
    Connect,
    /// TLS handshake (implicit or after STARTTLS/STLS).
    Tls,
    /// Waiting for the greeting.
    Greeting,
    /// CAPABILITY / CAPA.
    Capability,
    /// STARTTLS / STLS.
    StartTls,
    /// LOGIN / USER+PASS with the probe account.
    Login,
    /// SELECT INBOX / STAT.
    Mailbox,
    /// LOGOUT / QUIT.
    Logout,
    /// The whole probe (the scheduler's safety deadline).
    Probe,
}

impl ProbeStep {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStep::Resolve => "resolve",
            ProbeStep::Connect => "connect",
            ProbeStep::Tls => "tls",
            ProbeStep::Greeting => "greeting",
            ProbeStep::Capability => "capability",
            ProbeStep::StartTls => "starttls",
            ProbeStep::Login => "login",
            ProbeStep::Mailbox => "mailbox",
            ProbeStep::Logout => "logout",
            ProbeStep::Probe => "probe",
        }
    }
}

impl fmt::Display for ProbeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a probe failed: the step and what went wrong. Never contains secrets or raw
/// backend bytes beyond a short status text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step} {what}")]
pub struct ProbeError {
    /// The step that failed.
    pub step: ProbeStep,
    /// What happened, e.g. `timed out after 3s`, `refused: NO [AUTHENTICATIONFAILED]`.
    pub what: String,
}

impl ProbeError {
    /// A step failed.
    pub fn new(step: ProbeStep, what: impl Into<String>) -> Self {
        ProbeError {
            step,
            what: what.into(),
        }
    }

    /// A step did not finish within `limit`.
    pub fn timeout(step: ProbeStep, limit: Duration) -> Self {
        ProbeError::new(step, format!("timed out after {}", fmt_duration(limit)))
    }
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Success, or the failing step.
    pub result: Result<(), ProbeError>,
    /// The slowest single response (compared with `degraded_latency`).
    pub latency: Duration,
    /// The whole probe, connect to close (for `backend_probe_duration_seconds`).
    pub duration: Duration,
}

impl ProbeOutcome {
    /// A successful probe.
    pub fn ok(latency: Duration, duration: Duration) -> Self {
        ProbeOutcome {
            result: Ok(()),
            latency,
            duration,
        }
    }

    /// A failed probe.
    pub fn failed(error: ProbeError, duration: Duration) -> Self {
        ProbeOutcome {
            result: Err(error),
            latency: duration,
            duration,
        }
    }
}

/// The last probe of one protocol, as shown in `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// Probed protocol.
    pub protocol: Protocol,
    /// Whether it succeeded.
    pub ok: bool,
    /// Slowest single response.
    pub latency: Duration,
    /// Whole probe.
    pub duration: Duration,
    /// When it finished (wall clock).
    pub at: SystemTime,
    /// Why it failed.
    pub error: Option<String>,
}

/// A boxed probe future.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = ProbeOutcome> + Send + 'a>>;

/// Runs one probe. Implemented by the server's network prober and by test fakes.
///
/// Contract: the prober applies `HealthSettings::timeout` to every step itself (connect,
/// TLS, greeting, each command) and reports which step failed; the scheduler only adds a
/// safety deadline of `probe_deadline()` around the whole probe. Probers must not log
/// secrets; an error's `what` is shown on the status page.
pub trait Prober: Send + Sync + 'static {
    /// Probe `target` once.
    fn probe(&self, target: &BackendTarget) -> ProbeFuture<'_>;
}
