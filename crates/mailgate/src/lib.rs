//! mailgate server: listeners, TLS, session drivers, the backend client, splice,
//! admin HTTP, metrics, shutdown. The binary (`main.rs`) only parses the command line.
//!
//! One session's path, in order: [`listener`] accepts → [`session`] drives the
//! protocol engine (greeting, pre-auth, STARTTLS) → routing snapshot lookup →
//! [`admission`] → [`backend`] replays the login → [`splice`] copies bytes.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod backend;
pub mod client_limits;
pub mod commands;
pub mod conn;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod prober;
pub mod server;
pub mod session;
pub mod splice;
pub mod tls;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use mailgate_config::{Config, Routing, RoutingTable};

/// `mailgate run`: load the configuration and serve until SIGTERM/SIGINT.
pub fn run_from_config(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    logging::init(&config.log);
    let loaded = RoutingTable::load(&config.routing_file).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let tls = match &config.tls {
        Some(t) => Some(server::load_tls(t).context("tls")?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listeners = server::Listeners::bind(&config)?;
        let admin_listeners = admin::bind(&config)?;
        let routing = Arc::new(Routing::new(loaded));
        let routing_file = config.routing_file.clone();
        let shared = server::Shared::new(config, routing, tls);
        let admin = admin::start(&shared, admin_listeners);
        let _watcher = spawn_reload_triggers(&shared, &routing_file, admin.tokens());
        server::serve(shared, listeners, shutdown_signal()).await;
        admin.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGHUP and routing-file changes trigger a reload (of the routing file, certificates
/// and the admin token).
fn spawn_reload_triggers(
    shared: &Arc<server::Shared>,
    routing_file: &Path,
    tokens: Arc<admin::auth::TokenStore>,
) -> Option<mailgate_config::Watcher> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(4);
    let tx_hup = tx.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let _ = tx_hup.try_send("sighup");
        }
    });
    let s = shared.clone();
    tokio::spawn(async move {
        while let Some(trigger) = rx.recv().await {
            let _ = s.reload(trigger).await;
            let _ = tokens.reload();
        }
    });
    match mailgate_config::watch(routing_file, move || {
        let _ = tx.try_send("file_change");
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the routing file; reload with SIGHUP");
            None
        }
    }
}

/// Resolves at the first SIGTERM/SIGINT; a second one exits at once.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
}
