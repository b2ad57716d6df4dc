//! The immutable routing snapshot: backends, domain/wildcard/user maps, default. Built once
//! per load by `validate.rs`; shared behind an `Arc` and never mutated, so a session
//! keeps the table it started with while reloads swap in new ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::diag::Diagnostic;
use mailgate_proto::Secret;

/// How mailgate talks TLS to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendTls {
    /// Plaintext.
    None,
    /// Plaintext then `STARTTLS`/`STLS`.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

/// How the client's address is passed to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardClient {
    /// IMAP `ID` (x-originating-ip) and POP3 `XCLIENT`.
    Id,
    /// PROXY protocol v2 header.
    ProxyV2,
    /// Nothing.
    None,
}

/// A probe account used by the active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Login name.
    pub user: String,
    /// Password, read from `password_file` at load time (trailing newline trimmed).
    pub password: Secret,
}

/// One backend mail server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Name used in the routing file, metrics and the admin API.
    pub name: String,
    /// DNS name or IP address.
    pub host: String,
    /// IMAP port; `None`: the backend does not serve IMAP.
    pub imap_port: Option<u16>,
    /// POP3 port; `None`: the backend does not serve POP3.
    pub pop3_port: Option<u16>,
    /// TLS towards the backend.
    pub tls: BackendTls,
    /// CA bundle to verify the backend with (default: system roots).
    pub tls_ca_file: Option<PathBuf>,
    /// Verify the backend's certificate (default true).
    pub tls_verify: bool,
    /// Name to verify/send as SNI (default: `host`).
    pub tls_server_name: Option<String>,
    /// Budget of spliced sessions.
    pub max_sessions: Option<u32>,
    /// Most logins waiting for this backend's verdict at once.
    pub max_logins_in_flight: Option<u32>,
    /// How the client address is forwarded.
    pub forward_client: ForwardClient,
    /// Optional login probe.
    pub probe: Option<Probe>,
    /// Text after `NO [UNAVAILABLE]` / `-ERR [SYS/TEMP]` when this backend does not admit.
    pub unavailable_message: Option<String>,
    /// Backend to use while this one does not admit (name of another backend).
    pub fallback: Option<String>,
    /// Name shown on the public status page instead of `name`.
    pub public_name: Option<String>,
    /// `drain: true` in the routing file: no new logins on any instance that reads it.
    pub drain: Option<FileDrain>,
}

/// A drain written into the routing file (`drain: true`, `drain_reason:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDrain {
    /// `drain_reason`, if given (one line, at most [`MAX_DRAIN_REASON`] characters).
    pub reason: Option<String>,
}

/// Longest `drain_reason` accepted, in characters.
pub const MAX_DRAIN_REASON: usize = 200;

impl Backend {
    /// The backend's port for a protocol, `imap == true` for IMAP.
    pub fn port(&self, imap: bool) -> Option<u16> {
        if imap { self.imap_port } else { self.pop3_port }
    }
}

pub(crate) use crate::keymap::Entry;
use crate::keymap::KeyMap;

/// How many routes of each kind a table holds (for the `routes{kind}` metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteCounts {
    /// Per-user overrides.
    pub users: usize,
    /// Exact domains.
    pub domains: usize,
    /// `*.suffix` wildcards.
    pub wildcards: usize,
    /// 1 if a default backend is set.
    pub default: usize,
}

/// The immutable routing snapshot.
#[derive(Debug)]
pub struct RoutingTable {
    pub(crate) backends: Vec<Arc<Backend>>,
    pub(crate) by_name: HashMap<String, u32>,
    /// Exact domains: keys in one arena, 12 bytes per entry (`keymap.rs`).
    pub(crate) domains: KeyMap,
    /// Normalised suffix (without `*.`) → entry and the rule text `*.suffix`.
    pub(crate) wildcards: HashMap<Box<str>, (Entry, Arc<str>)>,
    pub(crate) users: KeyMap,
    /// Domains of user overrides that have no exact `domains:` entry.
    pub(crate) user_only_domains: std::collections::HashSet<Box<str>>,
    pub(crate) default: Option<u32>,
    pub(crate) default_domain: Option<String>,
    /// `master_user_separator` (`None`: the master-user form is off).
    pub(crate) master_user_separator: Option<char>,
    pub(crate) version: u64,
    pub(crate) loaded_at: SystemTime,
    pub(crate) source: PathBuf,
}

/// A freshly loaded table and the warnings its file produced.
#[derive(Debug)]
pub struct Loaded {
    /// The table.
    pub table: RoutingTable,
    /// Non-fatal findings (e.g. a backend nobody references).
    pub warnings: Vec<Diagnostic>,
}

impl RoutingTable {
    /// A backend by name.
    pub fn backend(&self, name: &str) -> Option<&Arc<Backend>> {
        self.by_name
            .get(name)
            .and_then(|&i| self.backends.get(i as usize))
    }

    /// Every backend, in file order.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.backends.iter()
    }

    /// Content hash of the file this table was built from (same file → same version).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// `version` as 16 hex digits, for logs and `/status`.
    pub fn version_hex(&self) -> String {
        format!("{:016x}", self.version)
    }

    /// When the table was built.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// The routing file.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The domain used for logins without `@`, normalised.
    pub fn default_domain(&self) -> Option<&str> {
        self.default_domain.as_deref()
    }

    /// The separator of Dovecot's master-user form `user*master`; `None` when it is off.
    pub fn master_user_separator(&self) -> Option<char> {
        self.master_user_separator
    }

    /// The default backend, if any.
    pub fn default_backend(&self) -> Option<&Arc<Backend>> {
        self.default.and_then(|i| self.backends.get(i as usize))
    }

    /// Number of routes per kind.
    pub fn counts(&self) -> RouteCounts {
        RouteCounts {
            users: self.users.len(),
            domains: self.domains.len(),
            wildcards: self.wildcards.len(),
            default: usize::from(self.default.is_some()),
        }
    }

    pub(crate) fn name_of(&self, idx: u32) -> &str {
        self.backends
            .get(idx as usize)
            .map(|b| b.name.as_str())
            .unwrap_or("")
    }
}

/// FNV-1a, 64 bit: a stable content hash for the table version.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
