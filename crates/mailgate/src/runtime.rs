//! The runtime snapshot: everything a session reads from configuration — the routing
//! table, the server certificates, the front settings (greeting, capabilities, OAuth), the
//! limits — in one immutable value behind one `ArcSwap`. A session loads it once at accept
//! and keeps it for its whole life; only the reloader (`reload.rs`) stores a new one,
//! so the routing table and the certificates of a snapshot always belong together.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use mailgate_config::{Config, LimitsConfig, RoutingTable};
use mailgate_proto::{FrontConfig, Limits};

use crate::endpoint::ListenerKind;
use crate::tls::ServerTls;

/// The greeting and capability settings of the client-facing engines.
#[derive(Debug, Clone)]
pub struct FrontSettings {
    /// Text after `* OK` / `+OK`.
    pub greeting: String,
    /// Advertise and pass through XOAUTH2 / OAUTHBEARER.
    pub oauth: bool,
    /// LOGINDISABLED / no USER before STARTTLS / STLS.
    pub require_tls_for_login: bool,
}

/// The admin server's settings that change with a reload (`admin:` except the token file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// `admin.show_addresses`.
    pub show_addresses: bool,
    /// `admin.domain_check`.
    pub domain_check: bool,
    /// `admin.domain_checks_per_minute`.
    pub domain_checks_per_minute: u32,
}

impl AdminSettings {
    /// The settings of `config.admin`.
    pub fn new(a: &mailgate_config::AdminConfig) -> Self {
        AdminSettings {
            show_addresses: a.show_addresses,
            domain_check: a.domain_check,
            domain_checks_per_minute: a.domain_checks_per_minute,
        }
    }
}

/// One consistent view of the configuration in force.
#[derive(Debug)]
pub struct Runtime {
    /// The routing table.
    pub routing: Arc<RoutingTable>,
    /// The server certificates (`None` without a `tls:` section).
    pub tls: Option<Arc<ServerTls>>,
    /// Greeting and capabilities.
    pub front: FrontSettings,
    /// Timeouts and per-IP limits (`limits:`).
    pub limits: LimitsConfig,
    /// The protocol engines' limits, derived from `limits` once.
    pub proto_limits: Limits,
    /// Load balancers allowed to send a PROXY protocol header.
    pub proxy_from: Vec<IpAddr>,
    /// After the shutdown grace, spliced sessions close spread over this window.
    pub shutdown_close_window: Duration,
    /// How long spliced sessions may continue after shutdown begins.
    pub shutdown_grace: Duration,
    /// Admin settings (status page addresses, domain check and its rate).
    pub admin: AdminSettings,
    /// Per-step timeout of health probes (`health.timeout`).
    pub probe_timeout: Duration,
    /// Counts the snapshots stored since start (1 = the one loaded at start).
    pub generation: u64,
}

impl Runtime {
    /// The snapshot of `config` with `routing` and `tls` loaded from its files.
    pub fn new(config: &Config, routing: RoutingTable, tls: Option<ServerTls>) -> Runtime {
        Runtime::build(config, Arc::new(routing), tls.map(Arc::new), 1)
    }

    /// The successor of `self` for a reloaded `config` (every reloadable key of
    /// mailgate.yaml) with a new routing table and certificates.
    pub fn reloaded(
        &self,
        config: &Config,
        routing: Arc<RoutingTable>,
        tls: Option<ServerTls>,
    ) -> Runtime {
        Runtime::build(config, routing, tls.map(Arc::new), self.generation + 1)
    }

    fn build(
        config: &Config,
        routing: Arc<RoutingTable>,
        tls: Option<Arc<ServerTls>>,
        generation: u64,
    ) -> Runtime {
        let l = &config.limits;
        Runtime {
            routing,
            tls,
            front: FrontSettings {
                greeting: config
                    .greeting
                    .clone()
                    .unwrap_or_else(|| mailgate_proto::DEFAULT_GREETING.into()),
                oauth: config.oauth,
                require_tls_for_login: config.tls.as_ref().is_some_and(|t| t.require_tls_for_login),
            },
            limits: l.clone(),
            proto_limits: Limits {
                max_line: l.max_line,
                max_literal: l.max_literal,
                max_bad_commands: l.max_bad_commands,
                ..Limits::default()
            },
            proxy_from: config.listen.proxy_from.clone(),
            shutdown_close_window: config.shutdown_close_window,
            shutdown_grace: config.shutdown_grace,
            admin: AdminSettings::new(&config.admin),
            probe_timeout: config.health.timeout,
            generation,
        }
    }

    /// The client-facing engine's configuration for a listener.
    pub fn front_config(&self, kind: ListenerKind) -> FrontConfig {
        FrontConfig {
            limits: self.proto_limits.clone(),
            tls_available: self.tls.is_some() && !kind.implicit_tls(),
            require_tls_for_login: self.front.require_tls_for_login,
            greeting_text: self.front.greeting.clone(),
            oauth: self.front.oauth,
            advertised: mailgate_proto::Advertised::default(),
        }
    }
}

/// The snapshot in force; cheap to clone and share.
#[derive(Debug, Clone)]
pub struct RuntimeHandle {
    current: Arc<ArcSwap<Runtime>>,
}

impl RuntimeHandle {
    /// Start with `runtime`.
    pub fn new(runtime: Runtime) -> Self {
        RuntimeHandle {
            current: Arc::new(ArcSwap::from_pointee(runtime)),
        }
    }

    /// The snapshot in force (a session takes it once and keeps it).
    pub fn snapshot(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Install a new snapshot (the reloader only).
    pub(crate) fn store(&self, runtime: Runtime) {
        self.current.store(Arc::new(runtime));
    }
}
