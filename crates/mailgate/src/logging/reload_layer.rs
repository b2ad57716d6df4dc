//! `log.level` and `log.format` change at run time: the installed subscriber is a registry
//! with one layer of ours, [`LogLayer`], holding the filter and the formatter, each an
//! immutable value swapped atomically (`ArcSwap`). A reload first prepares both
//! ([`LogReload::prepare`]: a filter that does not parse is refused before anything is
//! swapped), then installs them ([`PreparedLog::install`]) and has tracing recompute which
//! callsites are enabled, so a disabled `debug!` costs nothing until a reload enables it.
//!
//! Not `tracing_subscriber::reload`: its layer takes a read lock on every callback, and a
//! session's `conn` span is entered and left on every poll of its future. Here entering and
//! leaving a span reach the filter only when it has span directives (`target[span]=level`,
//! whose scope is tracked per entered span), and never the formatter (no span events are
//! configured: it does nothing on enter and exit).
//!
//! `RUST_LOG`, when set at start, keeps overriding `log.level`: a reload then changes only
//! the format, and says so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use mailgate_config::{LogConfig, LogFormat};
use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::{EnvFilter, Layer, Registry};

use super::NonBlocking;
use super::plain_fields::PlainFields;
use super::plain_line::PlainLine;

type FmtLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The reload handles of the process-wide subscriber (set by `logging::init`).
pub(crate) static RELOAD: OnceLock<LogReload> = OnceLock::new();

/// A level filter and whether it has span directives.
struct Filter {
    env: EnvFilter,
    /// Some directive names a span or its fields (`[...]`): the filter follows spans.
    spans: bool,
}

impl Filter {
    fn new(env: EnvFilter) -> Self {
        // `EnvFilter` writes a directive with `[` exactly when it has a span or fields.
        let spans = env.to_string().contains('[');
        Filter { env, spans }
    }
}

/// A formatter and whether it must give old spans JSON fields.
struct Fmt {
    layer: FmtLayer,
    /// JSON installed by a reload: spans opened before it have their fields formatted
    /// as text only, and the JSON formatter panics on a span without JSON fields. Such
    /// spans get an empty field set.
    fill_json: bool,
}

/// What [`LogLayer`] uses now.
struct Current {
    filter: ArcSwap<Filter>,
    /// The filter's `spans`, read without loading the filter on every enter and exit.
    spans: AtomicBool,
    fmt: ArcSwap<Fmt>,
}

impl Current {
    /// The filter, if it follows spans.
    fn span_filter(&self) -> Option<arc_swap::Guard<Arc<Filter>>> {
        if !self.spans.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.filter.load()).filter(|f| f.spans)
    }
}

/// Give every span of `event`'s scope that has no JSON fields (opened before the format
/// became JSON) an empty set, so that the JSON formatter writes the span without fields.
fn fill_json_fields(event: &Event<'_>, ctx: &Context<'_, Registry>) {
    let Some(scope) = ctx.event_scope(event) else {
        return;
    };
    for span in scope {
        let mut ext = span.extensions_mut();
        if ext.get_mut::<FormattedFields<JsonFields>>().is_none() {
            ext.insert(FormattedFields::<JsonFields>::new("{}".to_string()));
        }
    }
}

/// The filter and the formatter in one layer, each swappable ([`Handles`]).
struct LogLayer {
    current: Arc<Current>,
}

impl Layer<Registry> for LogLayer {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        Layer::<Registry>::register_callsite(&self.current.filter.load().env, metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Layer::<Registry>::max_level_hint(&self.current.filter.load().env)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, Registry>) -> bool {
        Layer::<Registry>::enabled(&self.current.filter.load().env, metadata, ctx)
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, Registry>) {
        let filter = self.current.filter.load();
        if filter.spans {
            Layer::<Registry>::on_new_span(&filter.env, attrs, id, ctx.clone());
        }
        self.current.fmt.load().layer.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, Registry>) {
        let filter = self.current.filter.load();
        if filter.spans {
            Layer::<Registry>::on_record(&filter.env, id, values, ctx.clone());
        }
        self.current.fmt.load().layer.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(filter) = self.current.span_filter() {
            Layer::<Registry>::on_enter(&filter.env, id, ctx);
        }
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, Registry>) {
        if let Some(filter) = self.current.span_filter() {
            Layer::<Registry>::on_exit(&filter.env, id, ctx);
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, Registry>) {
        let filter = self.current.filter.load();
        if filter.spans {
            Layer::<Registry>::on_close(&filter.env, id.clone(), ctx.clone());
        }
        self.current.fmt.load().layer.on_close(id, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, Registry>) {
        let fmt = self.current.fmt.load();
        if fmt.fill_json {
            fill_json_fields(event, &ctx);
        }
        fmt.layer.on_event(event, ctx);
    }
}

/// The handles that swap the filter and the formatter.
pub struct Handles {
    current: Arc<Current>,
}

impl Handles {
    fn set_filter(&self, env: EnvFilter) {
        let filter = Filter::new(env);
        let spans = filter.spans;
        self.current.filter.store(Arc::new(filter));
        self.current.spans.store(spans, Ordering::Relaxed);
        tracing_core::callsite::rebuild_interest_cache();
        // Records of the `log` crate (rustls, ...) are cut at `log`'s own maximum first:
        // the one the rebuild just computed (what `tracing_subscriber::reload` does).
        tracing_log::log::set_max_level(tracing_log::AsLog::as_log(&LevelFilter::current()));
    }

    fn set_fmt(&self, format: LogFormat, layer: FmtLayer) {
        let fill_json = format == LogFormat::Json;
        self.current.fmt.store(Arc::new(Fmt { layer, fill_json }));
    }
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
        LogFormat::Text => Box::new(
            layer
                .with_ansi(false)
                .event_format(PlainLine { time: true })
                .fmt_fields(PlainFields),
        ),
    }
}

/// The subscriber (registry + [`LogLayer`]) and its handles.
pub(crate) fn reloadable(
    format: LogFormat,
    filter: EnvFilter,
    writer: NonBlocking,
    ansi: bool,
) -> (Box<dyn tracing::Subscriber + Send + Sync>, Handles) {
    let filter = Filter::new(filter);
    let current = Arc::new(Current {
        spans: AtomicBool::new(filter.spans),
        filter: ArcSwap::from_pointee(filter),
        fmt: ArcSwap::from_pointee(Fmt {
            layer: fmt_layer(format, writer, ansi),
            fill_json: false,
        }),
    });
    let layer = LogLayer {
        current: Arc::clone(&current),
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    (Box::new(subscriber), Handles { current })
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
            o.handles.set_filter(filter);
            changed.push("log.level");
        } else if o.env_override && self.cfg.level != current.level {
            tracing::warn!(
                level = %self.cfg.level,
                "log.level not applied: RUST_LOG was set at start and overrides it"
            );
        }
        if self.cfg.format != current.format {
            let layer = fmt_layer(self.cfg.format, o.writer.clone(), o.ansi);
            o.handles.set_fmt(self.cfg.format, layer);
            changed.push("log.format");
        }
        *current = self.cfg;
        Ok(changed)
    }
}

#[cfg(test)]
#[path = "reload_layer_tests.rs"]
mod tests;
