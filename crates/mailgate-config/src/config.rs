//! The main configuration file (`mailgate.yaml`): listeners, TLS, the routing file's path,
//! health-check timing, admin, logging, limits. Loaded once at start; unknown keys are errors.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::diag::{self, ConfigErrors, Diagnostic};

/// `mailgate.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener addresses; an omitted listener is disabled.
    #[serde(default)]
    pub listen: Listen,
    /// Certificates for the client side; required by `imaps`/`pop3s` and STARTTLS.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The routing file, resolved relative to this file's directory.
    #[serde(default = "default_routing_file")]
    pub routing_file: PathBuf,
    /// Health-check timing.
    #[serde(default)]
    pub health: HealthConfig,
    /// Admin API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Pre-auth limits, per-IP caps, timeouts.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// How backend host names are resolved (DNS servers, last good addresses).
    #[serde(default)]
    pub resolver: crate::resolver::ResolverConfig,
    /// How long spliced sessions may continue after shutdown begins.
    #[serde(default = "d30s", with = "crate::duration")]
    pub shutdown_grace: Duration,
    /// After the grace, the spliced sessions still open are closed spread evenly over
    /// this window (each at a quiet moment, IMAP with a `* BYE`), not all at one instant.
    #[serde(default = "d5s", with = "crate::duration")]
    pub shutdown_close_window: Duration,
    /// After a binary upgrade (SIGUSR2, `mailgate ctl upgrade`) the old process keeps its
    /// spliced sessions this long at most, then closes the rest spread over
    /// `shutdown_close_window`.
    #[serde(default = "d1h", with = "crate::duration")]
    pub upgrade_grace: Duration,
    /// Text of the greeting after `* OK` / `+OK` (default: a neutral text, no version).
    #[serde(default)]
    pub greeting: Option<String>,
    /// Advertise and pass through XOAUTH2 / OAUTHBEARER (the user is taken from the token,
    /// the token is replayed unchanged). Enable only when every backend accepts them.
    #[serde(default)]
    pub oauth: bool,
    /// A reload whose moves would push a backend over `max_sessions`: `warn` or `strict`.
    #[serde(default)]
    pub reload_guard: crate::reload_guard::ReloadGuard,
    /// The file this was loaded from.
    #[serde(skip)]
    pub source: PathBuf,
}

/// `listen:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// IMAP, plaintext + STARTTLS.
    pub imap: Option<SocketAddr>,
    /// IMAP over implicit TLS.
    pub imaps: Option<SocketAddr>,
    /// POP3, plaintext + STLS.
    pub pop3: Option<SocketAddr>,
    /// POP3 over implicit TLS.
    pub pop3s: Option<SocketAddr>,
    /// Admin HTTP: /metrics, /status, /healthz, /readyz, admin API.
    pub admin: Option<SocketAddr>,
    /// Optional separate listener for the public status page only.
    pub status: Option<SocketAddr>,
    /// Peers allowed to send a PROXY protocol v2 header (load balancers); empty: PROXY off.
    #[serde(default)]
    pub proxy_from: Vec<IpAddr>,
}

/// `tls:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (relative to the config file).
    pub cert: PathBuf,
    /// PEM private key (relative to the config file).
    pub key: PathBuf,
    /// Refuse logins before STARTTLS/STLS on plaintext listeners.
    #[serde(default = "yes")]
    pub require_tls_for_login: bool,
    /// Extra certificates chosen by SNI.
    #[serde(default)]
    pub sni: Vec<SniCert>,
}

/// `tls.sni[]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    /// Server names this certificate is for.
    pub names: Vec<String>,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `health:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Probe period.
    #[serde(with = "crate::duration")]
    pub interval: Duration,
    /// Timeout of each probe step.
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
    /// Consecutive failures before `down`.
    pub fall: u32,
    /// Consecutive successes before `up`.
    pub rise: u32,
    /// Login/probe latency above which a backend is `degraded`.
    #[serde(with = "crate::duration")]
    pub degraded_latency: Duration,
    /// Most backends (share, 0..1) that may be automatically down at once.
    pub max_auto_down_share: f64,
    /// After coming up, a backend's admission ramps up over this time.
    #[serde(with = "crate::duration")]
    pub slow_start: Duration,
    /// During slow start, logins in flight to a backend without `max_logins_in_flight` are
    /// limited to the ramp's share of this (0: no such limit).
    pub slow_start_logins_in_flight: u32,
    /// Kicks of many sessions are spread over this time.
    #[serde(with = "crate::duration")]
    pub kick_window: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(3),
            fall: 3,
            rise: 2,
            degraded_latency: Duration::from_secs(1),
            max_auto_down_share: 0.5,
            slow_start: Duration::from_secs(30),
            slow_start_logins_in_flight: 100,
            kick_window: Duration::from_secs(60),
        }
    }
}

/// `admin:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for mutating endpoints (relative to the config file); none: they are off.
    pub token_file: Option<PathBuf>,
    /// Show backend host names/ports on the public status page.
    #[serde(default)]
    pub show_addresses: bool,
    /// Offer the status page's "check my domain" form (it tells anyone whether a domain is
    /// served here; turn it off to keep the hosted domains private).
    #[serde(default = "yes")]
    pub domain_check: bool,
    /// Domain checks one client address may make per minute; more get `429`.
    #[serde(default = "thirty")]
    pub domain_checks_per_minute: u32,
    /// Where the admin API's drains are kept across restarts (relative to the config
    /// file); none: they last until the process ends.
    pub state_file: Option<PathBuf>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

/// `log:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter (`info`, `mailgate=debug`); `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `limits:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest pre-auth command line, bytes.
    pub max_line: usize,
    /// Largest pre-auth literal, bytes.
    pub max_literal: usize,
    /// Bad pre-auth commands before the connection is closed.
    pub max_bad_commands: u32,
    /// Deadline from accept to login.
    #[serde(with = "crate::duration")]
    pub preauth_timeout: Duration,
    /// TLS handshake deadline.
    #[serde(with = "crate::duration")]
    pub tls_handshake_timeout: Duration,
    /// Resolving a backend's host name (an IP literal needs none).
    #[serde(with = "crate::duration")]
    pub backend_resolve_timeout: Duration,
    /// Backend TCP connect timeout (per address tried).
    #[serde(with = "crate::duration")]
    pub backend_connect_timeout: Duration,
    /// TLS handshake towards a backend (implicit TLS, or after STARTTLS / STLS).
    #[serde(with = "crate::duration")]
    pub backend_tls_timeout: Duration,
    /// From the TCP connection to the backend's greeting.
    #[serde(with = "crate::duration")]
    pub backend_greeting_timeout: Duration,
    /// Each write to a backend (PROXY header, commands, credentials).
    #[serde(with = "crate::duration")]
    pub backend_write_timeout: Duration,
    /// Each wait for a backend's answer after the greeting (CAPABILITY, STARTTLS, ID,
    /// XCLIENT, and the login verdict).
    #[serde(with = "crate::duration")]
    pub backend_login_timeout: Duration,
    /// Spliced sessions idle this long are closed (at least 30m for IMAP IDLE).
    #[serde(with = "crate::duration")]
    pub idle_timeout: Duration,
    /// Concurrent sessions per client IP; 0 = unlimited.
    pub max_sessions_per_ip: u32,
    /// Failed logins per client IP within `auth_failure_window` before back-off; 0 = off.
    pub max_auth_failures_per_ip: u32,
    /// Window for `max_auth_failures_per_ip`.
    #[serde(with = "crate::duration")]
    pub auth_failure_window: Duration,
    /// Delay before answering a failed login (wrong password and unknown domain alike, so
    /// that the two cannot be told apart).
    #[serde(with = "crate::duration")]
    pub auth_failure_delay: Duration,
    /// A spliced session whose writes make no progress for this long (the peer does not
    /// read while the other side has data) is closed. IMAP IDLE writes nothing, and a slow
    /// link makes progress, so neither is affected.
    #[serde(with = "crate::duration")]
    pub splice_write_stall: Duration,
    /// Most client connections at once (every listener); 0 = only the fd limit. Over it:
    /// `* BYE [UNAVAILABLE]` / `-ERR [SYS/TEMP]` and close.
    pub max_connections: u32,
    /// Most TLS handshakes with clients at once (implicit TLS and STARTTLS); 0 = unlimited.
    pub max_tls_handshakes: u32,
    /// Most sessions before login at once; 0 = unlimited.
    pub max_preauth_sessions: u32,
    /// Per-IP limits count IPv6 clients by this prefix length (an attacker's /64 is one
    /// address); IPv4 clients by their address.
    pub ipv6_prefix: u8,
    /// Failed logins of one user (from any address) within `auth_failure_window` before
    /// that user's logins are held back (password spraying); 0 = off.
    pub max_auth_failures_per_user: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_line: 8192,
            max_literal: 4096,
            max_bad_commands: 3,
            preauth_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            backend_resolve_timeout: Duration::from_secs(5),
            backend_connect_timeout: Duration::from_secs(5),
            backend_tls_timeout: Duration::from_secs(10),
            backend_greeting_timeout: Duration::from_secs(10),
            backend_write_timeout: Duration::from_secs(10),
            backend_login_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30 * 60),
            max_sessions_per_ip: 100,
            max_auth_failures_per_ip: 10,
            auth_failure_window: Duration::from_secs(60),
            auth_failure_delay: Duration::from_secs(2),
            splice_write_stall: Duration::from_secs(300),
            max_connections: 0,
            max_tls_handshakes: 256,
            max_preauth_sessions: 0,
            ipv6_prefix: 64,
            max_auth_failures_per_user: 20,
        }
    }
}

fn default_routing_file() -> PathBuf {
    PathBuf::from("routing.yaml")
}
fn d5s() -> Duration {
    Duration::from_secs(5)
}
fn d30s() -> Duration {
    Duration::from_secs(30)
}
fn d1h() -> Duration {
    Duration::from_secs(3600)
}
impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token_file: None,
            show_addresses: false,
            domain_check: true,
            domain_checks_per_minute: 30,
            state_file: None,
        }
    }
}

fn thirty() -> u32 {
    30
}
fn yes() -> bool {
    true
}

impl Config {
    /// Read, parse and validate `mailgate.yaml`; relative paths become relative to its
    /// directory. Does not read the routing file or the certificates (see
    /// [`Config::check_files`]).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = diag::read_file(path)?;
        Self::parse(&text, path)
    }

    /// Parse and validate config YAML as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let mut cfg: Config = serde_saphyr::from_str_with_options(text, diag::yaml_options())
            .map_err(|e| ConfigErrors::single(diag::from_yaml_error(path, text, &e)))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.source = path.to_path_buf();
        cfg.routing_file = dir.join(&cfg.routing_file);
        if let Some(tls) = cfg.tls.as_mut() {
            tls.cert = dir.join(&tls.cert);
            tls.key = dir.join(&tls.key);
            for s in &mut tls.sni {
                s.cert = dir.join(&s.cert);
                s.key = dir.join(&s.key);
            }
        }
        if let Some(t) = cfg.admin.token_file.as_mut() {
            *t = dir.join(&*t);
        }
        if let Some(t) = cfg.admin.state_file.as_mut() {
            *t = dir.join(&*t);
        }
        let errors = cfg.validate(text);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn validate(&self, text: &str) -> Vec<Diagnostic> {
        let mut errors = Vec::new();
        let mut err = |key: &str, msg: &str| {
            errors.push(Diagnostic::new(
                &self.source,
                diag::line_of_key(text, key),
                key,
                msg,
            ));
        };
        let l = &self.listen;
        if l.imap.is_none() && l.imaps.is_none() && l.pop3.is_none() && l.pop3s.is_none() {
            err(
                "listen",
                "no client listener: set at least one of imap, imaps, pop3, pop3s",
            );
        }
        if self.tls.is_none() {
            for (set, key) in [
                (l.imaps.is_some(), "listen.imaps"),
                (l.pop3s.is_some(), "listen.pop3s"),
            ] {
                if set {
                    err(key, "implicit TLS listener needs a tls section (cert, key)");
                }
            }
        }
        let h = &self.health;
        if h.interval.is_zero() {
            err("health.interval", "must be more than 0");
        }
        if h.timeout.is_zero() {
            err("health.timeout", "must be more than 0");
        }
        if h.fall == 0 {
            err("health.fall", "must be at least 1");
        }
        if h.rise == 0 {
            err("health.rise", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&h.max_auto_down_share) {
            err("health.max_auto_down_share", "must be between 0 and 1");
        }
        let m = &self.limits;
        if m.max_line < 512 {
            err("limits.max_line", "must be at least 512 bytes");
        }
        if m.ipv6_prefix == 0 || m.ipv6_prefix > 128 {
            err("limits.ipv6_prefix", "must be between 1 and 128");
        }
        if m.max_bad_commands == 0 {
            err("limits.max_bad_commands", "must be at least 1");
        }
        for (key, d) in [
            ("limits.preauth_timeout", m.preauth_timeout),
            ("limits.tls_handshake_timeout", m.tls_handshake_timeout),
            ("limits.backend_resolve_timeout", m.backend_resolve_timeout),
            ("limits.backend_connect_timeout", m.backend_connect_timeout),
            ("limits.backend_tls_timeout", m.backend_tls_timeout),
            (
                "limits.backend_greeting_timeout",
                m.backend_greeting_timeout,
            ),
            ("limits.backend_write_timeout", m.backend_write_timeout),
            ("limits.backend_login_timeout", m.backend_login_timeout),
            ("limits.idle_timeout", m.idle_timeout),
            ("limits.splice_write_stall", m.splice_write_stall),
        ] {
            if d.is_zero() {
                err(key, "must be more than 0");
            }
        }
        if !["trace", "debug", "info", "warn", "error", "off"]
            .iter()
            .any(|lv| self.log.level.eq_ignore_ascii_case(lv))
            && !self.log.level.contains('=')
        {
            err(
                "log.level",
                "use trace, debug, info, warn, error, off or a filter like mailgate=debug",
            );
        }
        if let Some(g) = &self.greeting
            && (g.chars().any(char::is_control) || g.len() > 200)
        {
            err("greeting", "must be one line of at most 200 characters");
        }
        errors
    }

    /// Files the server will open at start (certificates, keys, admin token): a diagnostic
    /// for each that is missing or unreadable. Used by `mailgate check`.
    pub fn check_files(&self) -> Vec<Diagnostic> {
        let text = std::fs::read_to_string(&self.source).unwrap_or_default();
        let mut files: Vec<(String, &Path)> = Vec::new();
        if let Some(tls) = &self.tls {
            files.push(("tls.cert".into(), &tls.cert));
            files.push(("tls.key".into(), &tls.key));
            for (i, s) in tls.sni.iter().enumerate() {
                files.push((format!("tls.sni.{i}.cert"), &s.cert));
                files.push((format!("tls.sni.{i}.key"), &s.key));
            }
        }
        if let Some(t) = &self.admin.token_file {
            files.push(("admin.token_file".into(), t));
        }
        files
            .into_iter()
            .filter_map(|(key, p)| {
                let e = std::fs::File::open(p).err()?;
                let line = diag::line_of_key(&text, &key);
                Some(Diagnostic::new(
                    &self.source,
                    line,
                    key,
                    format!("cannot read {}: {e}", p.display()),
                ))
            })
            .collect()
    }
}
