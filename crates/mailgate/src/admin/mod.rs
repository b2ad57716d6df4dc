//! Admin HTTP (issue #6): `/metrics`, `/healthz`, `/readyz`, `/status` (JSON), `/` (the
//! status page for people) and the token-protected operator API (drain, undrain, reload,
//! kick) on `listen.admin`; optionally the read-only status page alone on a public
//! `listen.status`. `mailgate ctl` ([`ctl`]) is the command-line client.
//!
//! Lifecycle: [`bind`] binds both listeners and reads the token before the proxy starts
//! (a bind error fails startup); [`start`] serves them; [`AdminHandle::stop`] ends them
//! after the proxy's shutdown grace, so that metrics stay visible while sessions drain.
//! See docs/admin.md.

pub mod auth;
pub mod ctl;
pub mod drains;
pub mod http;
pub mod routes;
pub mod server;
mod state_gauges;
pub mod status_json;
pub mod status_page;
pub use state_gauges::StateGauges;
#[cfg(test)]
pub(crate) mod testutil;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mailgate_config::Config;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::auth::{TokenError, TokenStore};
use self::routes::{AdminState, Surface};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::reload::ReloadHandle;
use crate::runtime::RuntimeHandle;
use mailgate_health::{HealthView, KickRegistry};

/// Why the admin server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A listener could not be bound.
    #[error("{key}: cannot bind {addr}: {source}")]
    Bind {
        /// Config key (`listen.admin`, `listen.status`).
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token file could not be used.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Bound admin listeners and the token, ready to serve.
#[derive(Debug)]
pub struct AdminListeners {
    admin: Option<TcpListener>,
    status: Option<TcpListener>,
    tokens: Arc<TokenStore>,
}

/// The handles the admin server uses.
#[derive(Debug, Clone)]
pub struct AdminContext {
    /// Health, drain, budgets.
    pub health: HealthView,
    /// Kicks.
    pub kicks: KickRegistry,
    /// What the probes saw each backend advertise (`/status` capabilities and drift).
    pub capabilities: mailgate_health::CapabilityBook,
    /// The configuration snapshot in force.
    pub runtime: RuntimeHandle,
    /// The reloader.
    pub reload: ReloadHandle,
    /// Every metric family (for `/metrics`).
    pub metrics: Arc<Metrics>,
    /// The state gauges refreshed at each scrape.
    pub gauges: Arc<StateGauges>,
    /// Shutdown state (readiness).
    pub lifecycle: Arc<Lifecycle>,
    /// `admin.token_file` is set (a restart-only key; the reloadable `admin:` keys are read
    /// from the runtime snapshot at each request).
    pub token_configured: bool,
    /// The reload guard (its mode, for the move planner's verdict).
    pub guard: Arc<crate::move_plan::guard::MoveGuard>,
    /// This instance's drains and `admin.state_file`.
    pub drains: Arc<crate::state_file::DrainStore>,
}

impl AdminListeners {
    /// The admin token store (the reloader re-reads its file).
    pub fn tokens(&self) -> Arc<TokenStore> {
        self.tokens.clone()
    }

    /// The bound address of `listen.admin`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }
}

/// Bind `listen.admin` and `listen.status` and read `admin.token_file` (needs a runtime).
pub fn bind(config: &Config) -> Result<AdminListeners, AdminError> {
    let tokens = TokenStore::load(config.admin.token_file.as_deref())?;
    let bind_one = |key: &'static str, addr: Option<SocketAddr>| {
        addr.map(|addr| {
            crate::listener::bind(addr).map_err(|source| AdminError::Bind { key, addr, source })
        })
        .transpose()
    };
    Ok(AdminListeners {
        admin: bind_one("listen.admin", config.listen.admin)?,
        status: bind_one("listen.status", config.listen.status)?,
        tokens,
    })
}

/// The running admin server.
#[derive(Debug)]
pub struct AdminHandle {
    tokens: Arc<TokenStore>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Serve the bound listeners.
pub fn start(ctx: AdminContext, bound: AdminListeners) -> AdminHandle {
    if bound.admin.is_some() && !ctx.token_configured {
        tracing::warn!(
            "admin.token_file is not set: drain, undrain, reload and kick over HTTP are disabled"
        );
    }
    let state = Arc::new(AdminState {
        ctx,
        tokens: bound.tokens.clone(),
        ready: AtomicBool::new(false),
        domain_checks: routes::DomainChecks::default(),
    });
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for (listener, surface) in [
        (bound.admin, Surface::Admin),
        (bound.status, Surface::Public),
    ] {
        let Some(listener) = listener else { continue };
        if let Ok(addr) = listener.local_addr() {
            let name = if surface == Surface::Admin {
                "admin"
            } else {
                "status"
            };
            tracing::info!(listener = name, %addr, "listening");
        }
        tasks.push(tokio::spawn(server::serve(
            listener,
            state.clone(),
            surface,
            stop.clone(),
        )));
    }
    state.ready.store(true, Ordering::Release);
    AdminHandle {
        tokens: bound.tokens,
        stop,
        tasks,
    }
}

impl AdminHandle {
    /// The token store (reload triggers re-read it).
    pub fn tokens(&self) -> Arc<TokenStore> {
        self.tokens.clone()
    }

    /// Stop serving: open requests get a moment to finish.
    pub async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
    }
}
