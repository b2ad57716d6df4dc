//! Every metric family's name, in one place (registered under the `mailgate_` prefix;
//! counters get `_total` from the encoder). docs/metrics.md describes each; a test checks
//! that every exported family is documented there.

/// `mailgate_backend_up`
pub const BACKEND_UP: &str = "backend_up";
/// `mailgate_backend_state`
pub const BACKEND_STATE: &str = "backend_state";
/// `mailgate_backend_drained`
pub const BACKEND_DRAINED: &str = "backend_drained";
/// `mailgate_backend_sessions`
pub const BACKEND_SESSIONS: &str = "backend_sessions";
/// `mailgate_backend_max_sessions`
pub const BACKEND_MAX_SESSIONS: &str = "backend_max_sessions";
/// `mailgate_backend_logins_in_flight`
pub const BACKEND_LOGINS_IN_FLIGHT: &str = "backend_logins_in_flight";
/// `mailgate_backend_down_suppressed`
pub const BACKEND_DOWN_SUPPRESSED: &str = "backend_down_suppressed";
/// `mailgate_backend_capability{backend,protocol,stage,capability}`
pub const BACKEND_CAPABILITY: &str = "backend_capability";
/// `mailgate_capability_drift{protocol}`
pub const CAPABILITY_DRIFT: &str = "capability_drift";
/// `mailgate_backend_probe_duration_seconds`
pub const BACKEND_PROBE_DURATION: &str = "backend_probe_duration_seconds";
/// `mailgate_backend_login_duration_seconds`
pub const BACKEND_LOGIN_DURATION: &str = "backend_login_duration_seconds";
/// `mailgate_logins_total`
pub const LOGINS: &str = "logins";
/// `mailgate_refused_total`
pub const REFUSED: &str = "refused";
/// `mailgate_sessions_active`
pub const SESSIONS_ACTIVE: &str = "sessions_active";
/// `mailgate_bytes_total`
pub const BYTES: &str = "bytes";
/// `mailgate_kicks_total`
pub const KICKS: &str = "kicks";
/// `mailgate_config_reloads_total`
pub const CONFIG_RELOADS: &str = "config_reloads";
/// `mailgate_config_last_reload_success_timestamp_seconds`
pub const CONFIG_LAST_RELOAD_SUCCESS: &str = "config_last_reload_success_timestamp_seconds";
/// `mailgate_config_reloads_refused_total{reason}`.
pub const CONFIG_RELOADS_REFUSED: &str = "config_reloads_refused";
/// `mailgate_routes`
pub const ROUTES: &str = "routes";
/// `mailgate_reload_guard_total`
pub const RELOAD_GUARD: &str = "reload_guard";
/// `mailgate_tls_certificate_not_after_timestamp_seconds`
pub const TLS_CERT_NOT_AFTER: &str = "tls_certificate_not_after_timestamp_seconds";
/// `mailgate_log_lines_dropped_total`
pub const LOG_LINES_DROPPED: &str = "log_lines_dropped";
/// `mailgate_connections_refused_total`
pub const CONNECTIONS_REFUSED: &str = "connections_refused";
/// `mailgate_tls_handshake_failures_total`
pub const TLS_HANDSHAKE_FAILURES: &str = "tls_handshake_failures";
/// `mailgate_build_info`
pub const BUILD_INFO: &str = "build_info";
