//! The line format of `log.format: text` without colours: tracing-subscriber's default
//! (`Format<Full>`: time, level, spans, target, fields) byte for byte, written without
//! painting empty ANSI styles around every part and with the time written in one piece.
//! Together with [`PlainFields`](super::plain_fields::PlainFields) this is what a
//! session's summary line costs (docs/performance.md, "Plain login: tracing and
//! capability parsing"). The tests compare it with `Format<Full>` line by line.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime as _;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// `Format<Full>` with the default settings (time, level, target; no thread names or ids,
/// no file or line), for a writer without ANSI.
#[derive(Debug, Clone, Copy)]
pub struct PlainLine {
    /// Write the time first (tests compare lines without it).
    pub time: bool,
}

/// Seconds since the epoch of 10000-01-01: RFC 3339 has four year digits.
const YEAR_10000: u64 = 253_402_300_800;

/// The time as tracing-subscriber's `SystemTime` writes it (`2026-12-01T17:40:00.123456Z`).
fn write_time(w: &mut Writer<'_>) -> fmt::Result {
    let now = SystemTime::now();
    match now.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() < YEAR_10000 => {
            write!(w, "{}", humantime::format_rfc3339_micros(now))
        }
        // Before 1970 or after 9999: tracing-subscriber's own way of writing those.
        _ => tracing_subscriber::fmt::time::SystemTime.format_time(w),
    }
}

fn level_str(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

impl<S, N> FormatEvent<S, N> for PlainLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Events of the `log` crate carry their own target and level.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if self.time {
            write_time(&mut writer)?;
            writer.write_char(' ')?;
        }
        writer.write_str(level_str(meta.level()))?;
        writer.write_char(' ')?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                seen = true;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}
