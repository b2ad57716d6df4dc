//! The first half of a reload: read and validate everything a reload would apply —
//! `mailgate.yaml`, the certificates it names, the routing file — and refuse a new
//! `mailgate.yaml` that changes a key only a restart applies. Runs on the reload thread
//! (`reload_lane.rs`) and changes nothing; the reloader swaps only once all of it succeeded.

use std::path::Path;

use mailgate_config::{Config, ConfigDiff, ConfigErrors, Diagnostic, RoutingTable};

use crate::listener_set::ListenerError;
use crate::logging::LogReloadError;
use crate::tls::{ServerTls, TlsError};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// `mailgate.yaml` does not parse or validate (every error with file, line, key).
    #[error("{0}")]
    Config(ConfigErrors),
    /// The routing file does not parse or validate (every error with file, line, key).
    #[error("{0}")]
    Routing(#[from] ConfigErrors),
    /// A certificate or key cannot be used.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// The new `mailgate.yaml` changes keys only a restart applies (file, line, key each).
    #[error("refused, nothing changed: {0}")]
    NeedsRestart(ConfigErrors),
    /// A new listener address cannot be bound.
    #[error("{0}")]
    Listener(#[from] ListenerError),
    /// The new `log:` section cannot be applied.
    #[error("{0}")]
    Log(#[from] LogReloadError),
    /// `reload_guard: strict` and the moves would push a backend over its budget.
    #[error("{0}")]
    OverBudget(#[from] crate::move_plan::guard::GuardRefusal),
    /// The blocking parse task died.
    #[error("reload task failed: {0}")]
    Task(String),
    /// The reloader is not running (shutdown).
    #[error("the reloader has stopped")]
    Stopped,
    /// The failure of the reload this request was joined with (one reload served several
    /// requests that waited for it).
    #[error("{0}")]
    Coalesced(std::sync::Arc<ReloadError>),
}

impl ReloadError {
    /// The `reason` label of `config_reloads_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ReloadError::Config(_) => "invalid_config",
            ReloadError::Routing(_) => "invalid_routing",
            ReloadError::Tls(_) => "tls",
            ReloadError::NeedsRestart(_) => "needs_restart",
            ReloadError::Listener(_) => "listener_bind",
            ReloadError::Log(_) => "log",
            ReloadError::OverBudget(_) => "over_budget",
            ReloadError::Task(_) | ReloadError::Stopped => "internal",
            ReloadError::Coalesced(e) => e.reason(),
        }
    }

    /// Every reason label value.
    pub const REASONS: [&'static str; 8] = [
        "invalid_config",
        "invalid_routing",
        "tls",
        "needs_restart",
        "listener_bind",
        "log",
        "over_budget",
        "internal",
    ];
}

/// A validated candidate: what a reload would put in force.
#[derive(Debug)]
pub struct Candidate {
    /// The new `mailgate.yaml` (the one in force when the reloader does not re-read it).
    pub config: Config,
    /// What changed in `mailgate.yaml` (empty when not re-read); no restart-only key.
    pub diff: ConfigDiff,
    /// The routing table.
    pub table: RoutingTable,
    /// The certificates of `config.tls`.
    pub tls: Option<ServerTls>,
}

/// Read `config_path` (when given; else keep `current`), then its certificates and the
/// routing file; refuse restart-only changes. Blocking.
pub fn candidate(config_path: Option<&Path>, current: &Config) -> Result<Candidate, ReloadError> {
    candidate_with(config_path, current, true).map(|(c, _)| c)
}

/// [`candidate`] for a dry run: restart-only changes are returned (file, line, key) instead
/// of refusing.
pub fn preview(
    config_path: Option<&Path>,
    current: &Config,
) -> Result<(Candidate, Vec<Diagnostic>), ReloadError> {
    candidate_with(config_path, current, false)
}

fn candidate_with(
    config_path: Option<&Path>,
    current: &Config,
    refuse_restart: bool,
) -> Result<(Candidate, Vec<Diagnostic>), ReloadError> {
    let mut restart = Vec::new();
    let (config, diff) = match config_path {
        Some(path) => {
            // Config::load bounds the file's size and names an unreadable file; the text
            // is read again only for the line numbers of restart-only keys.
            let config = Config::load(path).map_err(ReloadError::Config)?;
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let diff = ConfigDiff::between(current, &config);
            restart = diff.restart_errors(&text);
            if refuse_restart && !restart.is_empty() {
                return Err(ReloadError::NeedsRestart(ConfigErrors(restart)));
            }
            (config, diff)
        }
        None => (current.clone(), ConfigDiff::default()),
    };
    // Certificates first: a bad certificate must not leave a new routing table
    // half-applied, and a bad routing file leaves the certificates unchanged too.
    let tls = config
        .tls
        .as_ref()
        .map(ServerTls::from_config)
        .transpose()?;
    let loaded = RoutingTable::load(&config.routing_file)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let candidate = Candidate {
        config,
        diff,
        table: loaded.table,
        tls,
    };
    Ok((candidate, restart))
}
