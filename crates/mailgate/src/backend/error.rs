//! Why talking to a backend failed: the step, what happened, and what follows from it —
//! which health signal it is. Every failure without a verdict may be tried on the fallback
//! (the session decides that); only configuration problems say nothing about health.
//! Modelled on pingora-error's split of who failed.

use std::fmt;
use std::io;
use std::time::Duration;

use mailgate_health::{PassiveSignal, fmt_duration};
use mailgate_proto::UpstreamError;

/// The steps of a backend conversation, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Resolving the host name.
    Resolve,
    /// TCP connect.
    Connect,
    /// Writing the PROXY v2 header.
    ProxyHeader,
    /// TLS handshake (implicit, or after STARTTLS / STLS).
    Tls,
    /// Waiting for the greeting.
    Greeting,
    /// Capabilities, STARTTLS, ID / XCLIENT: after the greeting, before the credentials.
    Setup,
    /// The credentials were sent; waiting for the verdict.
    Login,
}

impl Step {
    /// Lower-case name (logs, probe errors).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Resolve => "resolve",
            Step::Connect => "connect",
            Step::ProxyHeader => "proxy_header",
            Step::Tls => "tls",
            Step::Greeting => "greeting",
            Step::Setup => "setup",
            Step::Login => "login",
        }
    }
}

/// What went wrong at a step.
#[derive(Debug)]
pub enum Failure {
    /// The step did not finish within its deadline.
    Timeout(Duration),
    /// Reading, writing or connecting failed (refused, reset, closed).
    Io(io::Error),
    /// The backend closed the connection.
    Closed,
    /// The backend broke the protocol.
    Protocol(UpstreamError),
    /// TLS failed (certificate, alert, handshake).
    Tls(String),
    /// DNS gave no address and no earlier answer is known.
    Resolve(String),
    /// The backend cannot be used as configured (no port for the protocol, bad TLS
    /// name, no address for its host). Not the backend's fault at run time.
    Config(String),
}

/// A failed backend conversation.
#[derive(Debug)]
pub struct BackendError {
    /// Where it failed.
    pub step: Step,
    /// What happened.
    pub failure: Failure,
}

impl BackendError {
    pub(crate) fn new(step: Step, failure: Failure) -> Self {
        BackendError { step, failure }
    }

    pub(crate) fn io(step: Step, e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return BackendError::new(step, Failure::Closed);
        }
        BackendError::new(step, Failure::Io(e))
    }

    /// What passive health learns, or `None` when the backend is not to blame.
    pub fn signal(&self) -> Option<PassiveSignal> {
        use PassiveSignal as S;
        Some(match (&self.failure, self.step) {
            (Failure::Config(_), _) => return None,
            (Failure::Timeout(_), Step::Resolve | Step::Connect) => S::ConnectTimeout,
            (Failure::Timeout(_), Step::Tls) => S::TlsTimeout,
            (Failure::Timeout(_), Step::Greeting | Step::ProxyHeader) => S::GreetingTimeout,
            (Failure::Timeout(_), Step::Setup | Step::Login) => S::LoginTimeout,
            (Failure::Tls(_), _) => S::TlsFailed,
            (Failure::Resolve(_), _) | (_, Step::Resolve | Step::Connect) => S::ConnectFailed,
            (Failure::Protocol(UpstreamError::GreetingRefused), _) => S::GreetingRefused,
            (Failure::Protocol(UpstreamError::Bye), _) => S::TemporaryFailure,
            (Failure::Protocol(_), _) => S::ProtocolError,
            (Failure::Io(_) | Failure::Closed, Step::Tls) => S::TlsFailed,
            (Failure::Io(_) | Failure::Closed, Step::ProxyHeader | Step::Greeting) => {
                S::ConnectFailed
            }
            (Failure::Io(_) | Failure::Closed, Step::Setup | Step::Login) => S::ConnectionLost,
        })
    }

    /// A short, stable label (logs).
    pub fn kind(&self) -> &'static str {
        match self.signal() {
            Some(s) => match s {
                PassiveSignal::ConnectFailed => "connect_failed",
                PassiveSignal::ConnectTimeout => "connect_timeout",
                PassiveSignal::TlsFailed => "tls_failed",
                PassiveSignal::TlsTimeout => "tls_timeout",
                PassiveSignal::GreetingTimeout => "greeting_timeout",
                PassiveSignal::GreetingRefused => "greeting_refused",
                PassiveSignal::LoginTimeout => "login_timeout",
                PassiveSignal::ConnectionLost => "connection_lost",
                PassiveSignal::ProtocolError => "protocol_error",
                PassiveSignal::TemporaryFailure => "temporary_failure",
                PassiveSignal::LoginLatency(_) | PassiveSignal::Answered => "answered",
            },
            None => "config",
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = self.step.as_str();
        match &self.failure {
            Failure::Timeout(d) => write!(f, "{step}: timed out after {}", fmt_duration(*d)),
            Failure::Io(e) => write!(f, "{step}: {}", e.kind()),
            Failure::Closed => write!(f, "{step}: connection closed by backend"),
            Failure::Protocol(e) => write!(f, "{step}: {e}"),
            Failure::Tls(e) => write!(f, "{step}: {e}"),
            Failure::Resolve(e) => write!(f, "{step}: {e}"),
            Failure::Config(e) => write!(f, "{step}: {e}"),
        }
    }
}

impl std::error::Error for BackendError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_name_the_step() {
        let t = |step| BackendError::new(step, Failure::Timeout(Duration::from_secs(1)));
        assert_eq!(
            t(Step::Connect).signal(),
            Some(PassiveSignal::ConnectTimeout)
        );
        assert_eq!(t(Step::Tls).signal(), Some(PassiveSignal::TlsTimeout));
        assert_eq!(
            t(Step::Greeting).signal(),
            Some(PassiveSignal::GreetingTimeout)
        );
        assert_eq!(t(Step::Login).signal(), Some(PassiveSignal::LoginTimeout));
        let refused = BackendError::io(Step::Connect, io::ErrorKind::ConnectionRefused.into());
        assert_eq!(refused.signal(), Some(PassiveSignal::ConnectFailed));
        let lost = BackendError::io(Step::Login, io::ErrorKind::ConnectionReset.into());
        assert_eq!(lost.signal(), Some(PassiveSignal::ConnectionLost));
        let bye = BackendError::new(
            Step::Greeting,
            Failure::Protocol(UpstreamError::GreetingRefused),
        );
        assert_eq!(bye.signal(), Some(PassiveSignal::GreetingRefused));
        let garbage = BackendError::new(Step::Login, Failure::Protocol(UpstreamError::Malformed));
        assert_eq!(garbage.signal(), Some(PassiveSignal::ProtocolError));
        let config = BackendError::new(Step::Connect, Failure::Config("no imap port".into()));
        assert_eq!(config.signal(), None);
        assert_eq!(t(Step::Tls).to_string(), "tls: timed out after 1s");
    }
}
