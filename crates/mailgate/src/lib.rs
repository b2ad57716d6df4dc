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
pub mod bufpool;
pub mod capabilities;
pub mod client_limits;
pub mod commands;
pub mod conn;
pub mod endpoint;
pub mod front_tls;
#[doc(hidden)]
pub mod fuzzing;
pub mod lifecycle;
pub mod listener;
pub mod listener_set;
pub mod logging;
pub mod metrics;
pub mod move_plan;
pub mod net;
pub mod prober;
pub mod proxy;
pub mod proxy_header;
pub mod reload;
pub mod reload_check;
pub mod reload_lane;
pub mod reload_metrics;
pub mod reload_queue;
pub mod runtime;
pub mod session;
pub mod splice;
pub mod state_file;
pub mod tls;
pub mod topology;
pub mod upgrade;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use mailgate_config::{Config, RoutingTable};

/// `mailgate run`: load the configuration and serve until SIGTERM/SIGINT.
pub fn run_from_config(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let _log = logging::init(&config.log);
    let loaded = RoutingTable::load(&config.routing_file).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let tls = match &config.tls {
        Some(t) => Some(proxy::load_tls(t).context("tls")?),
        None => None,
    };
    // Every session holds two descriptors: take the hard open-file limit; the connection
    // cap keeps a reserve below it (limits.max_connections).
    if let Ok(n) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!(open_files = n, "open-file limit");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // SIGHUP's default action ends the process. A listener accepts connections once it
        // is bound, before the reloader's handler below exists, and whoever sees it accept
        // may take mailgate as started and send one: caught from before the first bind on
        // (one that arrives before the reloader's handler is ignored, not fatal).
        let early_hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        // Sockets of the process this one replaces (binary upgrade) or from systemd socket
        // activation: binding an address takes the inherited socket (crate::upgrade).
        let parent = upgrade::inherit_sockets()
            .await
            .context("upgrade hand-over")?;
        let listeners = proxy::Listeners::bind(&config)?;
        let admin_listeners = admin::bind(&config)?;
        upgrade::inherit::close_unclaimed();
        let routing_file = config.routing_file.clone();
        let proxy = proxy::Proxy::new(config, loaded.table, tls);
        proxy.set_admin_tokens(admin_listeners.tokens());
        // Signal handlers before anything reports ready: a SIGHUP or SIGTERM sent as soon
        // as /readyz answers must find them.
        let shutdown = shutdown_signal();
        let config_file = proxy.config().source.clone();
        let supervisor = upgrade::Supervisor::new(&proxy, parent);
        // Under systemd (Type=notify-reload) the supervisor takes SIGHUP itself: it says
        // RELOADING=1, waits for that one reload and then says READY=1.
        let _watchers = reload::spawn_triggers(
            proxy.reloader(),
            &[&routing_file, &config_file],
            !supervisor.handles_sighup(),
        );
        drop(early_hup);
        let admin = upgrade::AdminSlot::new(admin::start(proxy.admin_context(), admin_listeners));
        proxy::serve(proxy, listeners, supervisor.run(admin.clone(), shutdown)).await;
        admin.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves at the first SIGTERM/SIGINT; a second one exits at once. The handlers are
/// registered when this is called, not when it is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
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
}
