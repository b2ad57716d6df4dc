//! `log.level` and `log.format` change at run time: the installed subscriber is a registry
//! with two `tracing_subscriber::reload` layers, the filter and the formatter. A reload
//! first prepares both ([`LogReload::prepare`]: a filter that does not parse is refused
//! before anything is swapped), then installs them ([`PreparedLog::install`]).
//!
//! `RUST_LOG`, when set at start, keeps overriding `log.level`: a reload then changes only
//! the format, and says so.

use std::sync::{Mutex, OnceLock};

use mailgate_config::{LogConfig, LogFormat};

use super::NonBlocking;
use super::plain_fields::PlainFields;
use tracing_subscriber::layer::{Layered, SubscriberExt as _};
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

type FilterLayer = reload::Layer<EnvFilter, Registry>;
type Filtered = Layered<FilterLayer, Registry>;
type FmtLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// The reload handles of the process-wide subscriber (set by `logging::init`).
pub(crate) static RELOAD: OnceLock<LogReload> = OnceLock::new();

/// The handles that swap the filter and the formatter.
pub struct Handles {
    filter: reload::Handle<EnvFilter, Registry>,
    fmt: reload::Handle<FmtLayer, Filtered>,
}

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handles").finish_non_exhaustive()
    }
}

/// Why a new `log:` section cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum LogReloadError {
    /// `log.level` is not a filter tracing understands.
    #[error("log.level: {0}")]
    Level(String),
    /// The subscriber is gone (cannot happen while the process logs).
    #[error("log: cannot swap the subscriber's layers: {0}")]
    Swap(String),
}

/// The installed subscriber's reload handles and what it was built with.
#[derive(Debug)]
pub struct LogReload {
    pub(crate) handles: Handles,
    pub(crate) writer: NonBlocking,
    pub(crate) ansi: bool,
    /// `RUST_LOG` was set at start: it keeps overriding `log.level`.
    pub(crate) env_override: bool,
    pub(crate) current: Mutex<LogConfig>,
}

/// A validated `log:` section, ready to install.
#[derive(Debug)]
pub struct PreparedLog<'a> {
    owner: &'a LogReload,
    cfg: LogConfig,
    filter: Option<EnvFilter>,
}

/// The process-wide subscriber's handles; `None` when `logging::init` did not install it
/// (in-process tests that log elsewhere).
pub fn reload_handle() -> Option<&'static LogReload> {
    RELOAD.get()
}

fn fmt_layer(format: LogFormat, writer: NonBlocking, ansi: bool) -> FmtLayer {
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Json => Box::new(layer.with_ansi(false).json().flatten_event(true)),
        LogFormat::Text if ansi => Box::new(layer.with_ansi(true)),
        LogFormat::Text => Box::new(layer.with_ansi(false).fmt_fields(PlainFields)),
    }
}

/// The subscriber (registry + reloadable filter + reloadable formatter) and its handles.
pub(crate) fn reloadable(
    format: LogFormat,
    filter: EnvFilter,
    writer: NonBlocking,
    ansi: bool,
) -> (Box<dyn tracing::Subscriber + Send + Sync>, Handles) {
    let (filter, filter_handle) = reload::Layer::new(filter);
    let (fmt, fmt_handle) = reload::Layer::new(fmt_layer(format, writer, ansi));
    let subscriber = tracing_subscriber::registry().with(filter).with(fmt);
    (
        Box::new(subscriber),
        Handles {
            filter: filter_handle,
            fmt: fmt_handle,
        },
    )
}

impl LogReload {
    /// The `log:` section in force.
    pub fn current(&self) -> LogConfig {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Validate `cfg` without changing anything.
    pub fn prepare(&self, cfg: &LogConfig) -> Result<PreparedLog<'_>, LogReloadError> {
        let current = self.current();
        let filter = if self.env_override || cfg.level == current.level {
            None
        } else {
            Some(EnvFilter::try_new(&cfg.level).map_err(|e| LogReloadError::Level(e.to_string()))?)
        };
        Ok(PreparedLog {
            owner: self,
            cfg: cfg.clone(),
            filter,
        })
    }
}

impl PreparedLog<'_> {
    /// Swap the filter and the formatter (only what changed). Returns what changed, for
    /// the reload log.
    pub fn install(self) -> Result<Vec<&'static str>, LogReloadError> {
        let o = self.owner;
        let mut current = o.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = Vec::new();
        if let Some(filter) = self.filter {
            o.handles
                .filter
                .reload(filter)
                .map_err(|e| LogReloadError::Swap(e.to_string()))?;
            changed.push("log.level");
        } else if o.env_override && self.cfg.level != current.level {
            tracing::warn!(
                level = %self.cfg.level,
                "log.level not applied: RUST_LOG was set at start and overrides it"
            );
        }
        if self.cfg.format != current.format {
            o.handles
                .fmt
                .reload(fmt_layer(self.cfg.format, o.writer.clone(), o.ansi))
                .map_err(|e| LogReloadError::Swap(e.to_string()))?;
            changed.push("log.format");
        }
        *current = self.cfg;
        Ok(changed)
    }
}
