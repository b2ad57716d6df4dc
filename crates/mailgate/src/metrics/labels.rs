//! Label sets and the vocabularies of their values: enums, never free-form strings, so a
//! label can only take the values docs/metrics.md lists.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// Values of the `protocol` label.
pub const PROTOCOLS: [&str; 2] = ["imap", "pop3"];

/// `{backend}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    /// Backend name.
    pub backend: String,
}

/// `{backend,state}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// Backend name.
    pub backend: String,
    /// `up`, `degraded` or `down`.
    pub state: &'static str,
}

/// `{backend,protocol}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendProtocol {
    /// Backend name.
    pub backend: String,
    /// `imap` or `pop3`.
    pub protocol: &'static str,
}

/// `{backend,protocol,result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabel {
    /// Backend name (`none` when no route matched).
    pub backend: String,
    /// `imap` or `pop3`.
    pub protocol: &'static str,
    /// The outcome.
    pub result: LoginResult,
}

/// `{backend,reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabel {
    /// Backend name.
    pub backend: String,
    /// Why (`down`, `drained`, `over_budget`, ...): `RefusalReason::as_str`.
    pub reason: &'static str,
}

/// `{listener}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// `imap`, `imaps`, `pop3`, `pop3s`.
    pub listener: &'static str,
}

/// A backend name shared by the series lookups of a running splice: cloning it for each
/// `get_or_create` costs a reference count, not an allocation.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct SharedName(pub std::sync::Arc<str>);

impl From<&str> for SharedName {
    fn from(name: &str) -> Self {
        SharedName(name.into())
    }
}

impl EncodeLabelValue for SharedName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

/// `{backend,direction}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabel {
    /// Backend name.
    pub backend: SharedName,
    /// Which way.
    pub direction: Direction,
}

/// `{result}` of reloads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    /// `success` or `failure`.
    pub result: ReloadResult,
}

/// `{kind}` of routing entries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `domain`, `wildcard`, `user`, `default`.
    pub kind: &'static str,
}

macro_rules! label_value {
    ($t:ty) => {
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    };
}

/// The `result` label of `mailgate_logins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginResult {
    /// The backend accepted the login.
    Ok,
    /// The backend refused the credentials.
    Rejected,
    /// The backend refused for now (`NO [UNAVAILABLE]`, `-ERR [SYS/TEMP]`, `[IN-USE]`, ...).
    TempFailure,
    /// No verdict: the backend could not be reached, timed out or broke the protocol.
    BackendError,
    /// mailgate did not admit the login (down, drained, over budget).
    Unavailable,
    /// No backend for the login's domain.
    NoRoute,
}

impl LoginResult {
    /// Every value.
    pub const ALL: [LoginResult; 6] = [
        LoginResult::Ok,
        LoginResult::Rejected,
        LoginResult::TempFailure,
        LoginResult::BackendError,
        LoginResult::Unavailable,
        LoginResult::NoRoute,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginResult::Ok => "ok",
            LoginResult::Rejected => "rejected",
            LoginResult::TempFailure => "temp_failure",
            LoginResult::BackendError => "backend_error",
            LoginResult::Unavailable => "unavailable",
            LoginResult::NoRoute => "no_route",
        }
    }
}
label_value!(LoginResult);

/// The `direction` label of `mailgate_bytes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → backend.
    ClientToBackend,
    /// Backend → client.
    BackendToClient,
}

impl Direction {
    /// Both directions.
    pub const ALL: [Direction; 2] = [Direction::ClientToBackend, Direction::BackendToClient];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToBackend => "client_to_backend",
            Direction::BackendToClient => "backend_to_client",
        }
    }
}
label_value!(Direction);

/// The `result` label of `mailgate_config_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReloadResult {
    /// The new configuration is in force.
    Success,
    /// Nothing changed; the error was logged.
    Failure,
}

impl ReloadResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Success => "success",
            ReloadResult::Failure => "failure",
        }
    }
}
label_value!(ReloadResult);

/// `{reason}` of refused connections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnRefusedLabel {
    /// Which limit.
    pub reason: ConnRefusal,
}

/// Why a client connection was refused before its greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnRefusal {
    /// `limits.max_sessions_per_ip` (by address, IPv6 by prefix).
    PerIp,
    /// `limits.max_connections`.
    MaxConnections,
    /// The connection cap derived from the open-file limit (below `limits.max_connections`,
    /// or without one): the soft `RLIMIT_NOFILE` less a reserve, two descriptors a session.
    OpenFiles,
    /// `limits.max_preauth_sessions`.
    MaxPreauth,
    /// `limits.max_tls_handshakes`.
    MaxTlsHandshakes,
}

impl ConnRefusal {
    /// Every value.
    pub const ALL: [ConnRefusal; 5] = [
        ConnRefusal::PerIp,
        ConnRefusal::MaxConnections,
        ConnRefusal::OpenFiles,
        ConnRefusal::MaxPreauth,
        ConnRefusal::MaxTlsHandshakes,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnRefusal::PerIp => "per_ip",
            ConnRefusal::MaxConnections => "max_connections",
            ConnRefusal::OpenFiles => "open_files",
            ConnRefusal::MaxPreauth => "max_preauth",
            ConnRefusal::MaxTlsHandshakes => "max_tls_handshakes",
        }
    }
}
label_value!(ConnRefusal);

/// `{listener,reason}` of failed TLS handshakes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsFailureLabel {
    /// `imap`, `imaps`, `pop3`, `pop3s` (STARTTLS / STLS on `imap` / `pop3`).
    pub listener: &'static str,
    /// Why the handshake failed.
    pub reason: TlsFailure,
}

/// Why a client's TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// Not done within `limits.tls_handshake_timeout`.
    Timeout,
    /// The client closed or reset the connection during the handshake.
    Eof,
    /// The client offered ALPN without `imap` / `pop3` (strict ALPN).
    Alpn,
    /// The client refused mailgate's certificate (an alert: unknown CA, expired, bad name).
    Certificate,
    /// Anything else the TLS library refused: not TLS at all, no common version or cipher
    /// suite, a malformed message.
    Protocol,
}

impl TlsFailure {
    /// Every value.
    pub const ALL: [TlsFailure; 5] = [
        TlsFailure::Timeout,
        TlsFailure::Eof,
        TlsFailure::Alpn,
        TlsFailure::Certificate,
        TlsFailure::Protocol,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::Timeout => "timeout",
            TlsFailure::Eof => "eof",
            TlsFailure::Alpn => "alpn",
            TlsFailure::Certificate => "certificate",
            TlsFailure::Protocol => "protocol",
        }
    }
}
label_value!(TlsFailure);

/// `{version,git_commit,rustc}` of `mailgate_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    /// The package version (`CARGO_PKG_VERSION`).
    pub version: &'static str,
    /// `MAILGATE_GIT_COMMIT` at build time, or `unknown`.
    pub git_commit: &'static str,
    /// The compiler's `rustc --version`, or `unknown`.
    pub rustc: &'static str,
}
