//! Log setup: `log.level` (RUST_LOG overrides it) and `log.format` (text | json).
//!
//! Logging never waits for the log's destination. An event is formatted on the thread that
//! logs it and handed to a bounded queue of [`QUEUE_LINES`] lines; one thread of its own
//! writes the queue to stderr. When the destination stalls (a stuck journald, a pipe
//! nobody reads) and the queue is full, further lines are dropped and counted
//! (`mailgate_log_lines_dropped_total`, [`dropped_lines`]) rather than blocking the async
//! runtime (tracing-appender's lossy non-blocking writer). The [`LogGuard`] that [`init`] returns flushes the queue when the process
//! ends; against a stalled destination it gives up after about a second.
//!
//! Text lines carry ANSI colour codes only when stderr is a terminal (and `NO_COLOR` is
//! not set): under systemd, in files and pipes they would be noise.

use std::fmt;
use std::io::{self, IsTerminal as _};
use std::sync::OnceLock;

use mailgate_config::{LogConfig, LogFormat};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt as _;

mod plain_fields;
mod plain_line;
mod reload_layer;
pub use reload_layer::{LogReload, LogReloadError, PreparedLog, reload_handle};
use reload_layer::{RELOAD, reloadable};
use std::sync::Mutex;
use tracing_appender::non_blocking::NonBlockingBuilder;
pub use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, WorkerGuard};

/// Lines the queue holds while the destination is slower than the events (a few MB at
/// most: lines are a few hundred bytes). Bursts far beyond any normal rate fit; a stalled
/// destination fills it in seconds, and from then on lines are dropped and counted.
pub const QUEUE_LINES: usize = 16 * 1024;

/// The dropped-lines counter of the process-wide writer installed by [`init`].
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the log writer thread running; dropping it flushes the queue (waiting about a
/// second at most). Hold it until the process exits.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer: keep it until the process exits"]
pub struct LogGuard {
    _worker: WorkerGuard,
}

/// Install the global subscriber writing to stderr. Safe to call once per process (a
/// second call changes nothing).
pub fn init(cfg: &LogConfig) -> LogGuard {
    let stderr = io::stderr();
    // journald stamps lines itself and reads a <N> priority: plain lines, no colours.
    if crate::upgrade::journal::stderr_is_journal() {
        let lines = crate::upgrade::journal::JournalLines::new(stderr);
        return init_with_sink(cfg, lines, false);
    }
    let ansi =
        io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    init_with_sink(cfg, stderr, ansi)
}

/// [`init`] with another destination than stderr (tests).
pub fn init_with_sink<W: io::Write + Send + 'static>(
    cfg: &LogConfig,
    sink: W,
    ansi: bool,
) -> LogGuard {
    // An empty RUST_LOG counts as unset: log.level applies (and reloads).
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|_| EnvFilter::try_from_default_env().ok());
    let env_override = env.is_some();
    let filter = env.unwrap_or_else(|| EnvFilter::new(cfg.level.clone()));
    let (writer, guard) = non_blocking(sink, QUEUE_LINES);
    let counter = writer.error_counter();
    let (subscriber, handles) = reloadable(cfg.format, filter, writer.clone(), ansi);
    if subscriber.try_init().is_ok() {
        let _ = DROPPED.set(counter);
        let _ = RELOAD.set(LogReload {
            handles,
            writer,
            ansi,
            env_override,
            current: Mutex::new(cfg.clone()),
        });
    }
    LogGuard { _worker: guard }
}

/// The bounded, lossy writer in front of `sink`: a full queue drops the line and counts
/// it ([`NonBlocking::error_counter`]) instead of waiting.
pub fn non_blocking<W: io::Write + Send + 'static>(
    sink: W,
    queue_lines: usize,
) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(queue_lines)
        .thread_name("mailgate-log")
        .finish(sink)
}

/// The subscriber [`init`] installs, writing to `writer`.
pub fn subscriber(
    format: LogFormat,
    filter: EnvFilter,
    writer: NonBlocking,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync> {
    reloadable(format, filter, writer, ansi).0
}

/// Log lines dropped so far because the log's destination could not keep up (0 before
/// [`init`]).
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
}

/// `mailgate_log_lines_dropped_total`: [`dropped_lines`], read at every scrape. Register
/// it as `log_lines_dropped` (the encoder adds `_total`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DroppedLinesMetric;

impl EncodeMetric for DroppedLinesMetric {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&dropped_lines(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// The log writer's metric family (`log_lines_dropped_total`).
#[derive(Debug, Default)]
pub struct LogMetrics;

impl crate::metrics::MetricGroup for LogMetrics {
    fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            crate::metrics::names::LOG_LINES_DROPPED,
            "Log lines dropped: the log's destination could not keep up",
            DroppedLinesMetric,
        );
    }
}
