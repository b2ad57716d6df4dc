//! Which keys of `mailgate.yaml` changed between two loads, and which of those a running
//! process can apply (a reload) or only a restart can.
//!
//! The reloader and `mailgate check --against` both use [`ConfigDiff::between`]: a reload
//! whose new file changes a restart-only key is refused as a whole, naming file, line and
//! key. Every key of [`Config`] is classified here: the function destructures each section
//! without `..`, so a key added to the schema does not compile until it is classified.

use std::fmt;
use std::path::PathBuf;

use crate::config::{AdminConfig, Config, HealthConfig, LimitsConfig, Listen, LogConfig};
use crate::diag::{self, Diagnostic};

/// How a changed key takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// A reload (SIGHUP, file change, `POST /reload`) applies it.
    Reload,
    /// Only a restart applies it; a reload that contains it is refused.
    Restart(&'static str),
}

/// One changed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// Dotted key path, e.g. `limits.idle_timeout`.
    pub key: &'static str,
    /// How it takes effect.
    pub apply: Apply,
    /// Old and new value, for restart-only keys (addresses and paths, never secrets).
    pub values: Option<(String, String)>,
}

/// The changed keys between two configurations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Every changed key, in file order of the schema.
    pub changes: Vec<ConfigChange>,
    /// The new file (for diagnostics).
    pub file: PathBuf,
}

/// Why each restart-only key cannot be applied by a reload.
pub const RESTART_KEYS: &[(&str, &str)] = &[
    (
        "listen.admin",
        "the admin HTTP server binds its listener at start",
    ),
    (
        "listen.status",
        "the admin HTTP server binds its listener at start",
    ),
    (
        "routing_file",
        "the file watcher watches the routing file's directory chosen at start",
    ),
    (
        "upgrade_grace",
        "the running process reads it at start (a binary upgrade's new process reads the new value)",
    ),
    (
        "resolver",
        "the backend client builds its DNS resolver at start",
    ),
    (
        "admin.token_file",
        "the token store reads the file named at start (the token in it reloads)",
    ),
    (
        "admin.state_file",
        "the admin API's drains are restored from and kept in the file named at start",
    ),
];

fn restart_reason(key: &str) -> Option<&'static str> {
    RESTART_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, r)| *r)
}

struct Collect(Vec<ConfigChange>);

impl Collect {
    fn field<T: PartialEq + fmt::Debug>(&mut self, key: &'static str, old: &T, new: &T) {
        if old == new {
            return;
        }
        match restart_reason(key) {
            Some(reason) => self.0.push(ConfigChange {
                key,
                apply: Apply::Restart(reason),
                values: Some((shown(old), shown(new))),
            }),
            None => self.0.push(ConfigChange {
                key,
                apply: Apply::Reload,
                values: None,
            }),
        }
    }
}

/// `Some(127.0.0.1:9143)` → `127.0.0.1:9143`, `None` → `(none)`, paths unquoted.
fn shown<T: fmt::Debug>(v: &T) -> String {
    let s = format!("{v:?}");
    let s = match s.strip_prefix("Some(").and_then(|s| s.strip_suffix(')')) {
        Some(inner) => inner.to_string(),
        None if s == "None" => "(none)".to_string(),
        None => s,
    };
    s.trim_matches('"').to_string()
}

impl ConfigDiff {
    /// What changed from `old` (in force) to `new` (the candidate).
    pub fn between(old: &Config, new: &Config) -> ConfigDiff {
        let mut c = Collect(Vec::new());
        let Config {
            listen,
            tls,
            routing_file,
            health,
            admin,
            log,
            limits,
            resolver,
            shutdown_grace,
            shutdown_close_window,
            upgrade_grace,
            greeting,
            oauth,
            reload_guard,
            source: _,
        } = new;
        listen_diff(&mut c, &old.listen, listen);
        let (ot, nt) = (old.tls.as_ref(), tls.as_ref());
        c.field("tls", &ot.is_some(), &nt.is_some());
        if let (Some(o), Some(n)) = (ot, nt) {
            c.field("tls.cert", &o.cert, &n.cert);
            c.field("tls.key", &o.key, &n.key);
            c.field(
                "tls.require_tls_for_login",
                &o.require_tls_for_login,
                &n.require_tls_for_login,
            );
            let names = |t: &crate::config::TlsConfig| {
                t.sni
                    .iter()
                    .map(|s| (s.names.clone(), s.cert.clone(), s.key.clone()))
                    .collect::<Vec<_>>()
            };
            c.field("tls.sni", &names(o), &names(n));
        }
        c.field("routing_file", &old.routing_file, routing_file);
        health_diff(&mut c, &old.health, health);
        admin_diff(&mut c, &old.admin, admin);
        let LogConfig { level, format } = log;
        c.field("log.level", &old.log.level, level);
        c.field("log.format", &old.log.format, format);
        limits_diff(&mut c, &old.limits, limits);
        c.field("resolver", &old.resolver, resolver);
        c.field("shutdown_grace", &old.shutdown_grace, shutdown_grace);
        c.field(
            "shutdown_close_window",
            &old.shutdown_close_window,
            shutdown_close_window,
        );
        c.field("upgrade_grace", &old.upgrade_grace, upgrade_grace);
        c.field("greeting", &old.greeting, greeting);
        c.field("oauth", &old.oauth, oauth);
        c.field("reload_guard", &old.reload_guard, reload_guard);
        ConfigDiff {
            changes: c.0,
            file: new.source.clone(),
        }
    }

    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes only a restart applies.
    pub fn needs_restart(&self) -> impl Iterator<Item = &ConfigChange> {
        self.changes
            .iter()
            .filter(|c| matches!(c.apply, Apply::Restart(_)))
    }

    /// The keys a reload applies.
    pub fn reloadable(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.changes
            .iter()
            .filter(|c| c.apply == Apply::Reload)
            .map(|c| c.key)
    }

    /// One diagnostic (file, line, key, old → new, why) per restart-only change; `text` is
    /// the new file's text, for line numbers.
    pub fn restart_errors(&self, text: &str) -> Vec<Diagnostic> {
        self.needs_restart()
            .map(|c| {
                let reason = match c.apply {
                    Apply::Restart(r) => r,
                    Apply::Reload => "",
                };
                let (old, new) = c.values.clone().unwrap_or_default();
                Diagnostic::new(
                    &self.file,
                    diag::line_of_key(text, c.key),
                    c.key,
                    format!("changed from {old} to {new}: needs a restart ({reason})"),
                )
            })
            .collect()
    }

    /// `reloads: a, b; restart: c` (or `no change`), for the reload log.
    pub fn summary(&self) -> String {
        let reload: Vec<&str> = self.reloadable().collect();
        let restart: Vec<&str> = self.needs_restart().map(|c| c.key).collect();
        let mut parts = Vec::new();
        if !reload.is_empty() {
            parts.push(format!("reloads: {}", reload.join(", ")));
        }
        if !restart.is_empty() {
            parts.push(format!("needs restart: {}", restart.join(", ")));
        }
        if parts.is_empty() {
            "no change".into()
        } else {
            parts.join("; ")
        }
    }
}

fn listen_diff(c: &mut Collect, o: &Listen, n: &Listen) {
    let Listen {
        imap,
        imaps,
        pop3,
        pop3s,
        admin,
        status,
        proxy_from,
    } = n;
    c.field("listen.imap", &o.imap, imap);
    c.field("listen.imaps", &o.imaps, imaps);
    c.field("listen.pop3", &o.pop3, pop3);
    c.field("listen.pop3s", &o.pop3s, pop3s);
    c.field("listen.admin", &o.admin, admin);
    c.field("listen.status", &o.status, status);
    c.field("listen.proxy_from", &o.proxy_from, proxy_from);
}

fn health_diff(c: &mut Collect, o: &HealthConfig, n: &HealthConfig) {
    let HealthConfig {
        interval,
        timeout,
        fall,
        rise,
        degraded_latency,
        max_auto_down_share,
        slow_start,
        slow_start_logins_in_flight,
        kick_window,
    } = n;
    c.field("health.interval", &o.interval, interval);
    c.field("health.timeout", &o.timeout, timeout);
    c.field("health.fall", &o.fall, fall);
    c.field("health.rise", &o.rise, rise);
    c.field(
        "health.degraded_latency",
        &o.degraded_latency,
        degraded_latency,
    );
    c.field(
        "health.max_auto_down_share",
        &o.max_auto_down_share,
        max_auto_down_share,
    );
    c.field("health.slow_start", &o.slow_start, slow_start);
    c.field(
        "health.slow_start_logins_in_flight",
        &o.slow_start_logins_in_flight,
        slow_start_logins_in_flight,
    );
    c.field("health.kick_window", &o.kick_window, kick_window);
}

fn admin_diff(c: &mut Collect, o: &AdminConfig, n: &AdminConfig) {
    let AdminConfig {
        token_file,
        show_addresses,
        domain_check,
        domain_checks_per_minute,
        state_file,
    } = n;
    c.field("admin.token_file", &o.token_file, token_file);
    c.field("admin.state_file", &o.state_file, state_file);
    c.field("admin.show_addresses", &o.show_addresses, show_addresses);
    c.field("admin.domain_check", &o.domain_check, domain_check);
    c.field(
        "admin.domain_checks_per_minute",
        &o.domain_checks_per_minute,
        domain_checks_per_minute,
    );
}

macro_rules! limits {
    ($c:ident, $o:ident, $n:ident: $($f:ident),* $(,)?) => {{
        let LimitsConfig { $($f),* } = $n;
        $( $c.field(concat!("limits.", stringify!($f)), &$o.$f, $f); )*
    }};
}

fn limits_diff(c: &mut Collect, o: &LimitsConfig, n: &LimitsConfig) {
    limits!(c, o, n:
        max_line, max_literal, max_bad_commands, preauth_timeout, tls_handshake_timeout,
        backend_resolve_timeout, backend_connect_timeout, backend_tls_timeout,
        backend_greeting_timeout, backend_write_timeout, backend_login_timeout, idle_timeout,
        max_sessions_per_ip, max_auth_failures_per_ip, auth_failure_window, auth_failure_delay,
        splice_write_stall, max_connections, max_tls_handshakes, max_preauth_sessions,
        ipv6_prefix, max_auth_failures_per_user,
    );
}

#[cfg(test)]
#[path = "config_diff_tests.rs"]
mod tests;
