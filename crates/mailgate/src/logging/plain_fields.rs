//! The field formatter of `log.format: text` lines without colours (every destination but
//! a terminal): the same bytes as tracing-subscriber's `DefaultFields`, written directly.
//!
//! `DefaultFields` writes each field as `{italic(name)}{dimmed("=")}{value:?}`; without
//! ANSI those styles are empty, but painting them still costs two `Display` calls through
//! `nu_ansi_term` per field. That was about half the CPU of a session's summary line and
//! of its `conn` span's fields (docs/performance.md, "Plain login: tracing and capability
//! parsing"). Here a field is `name`, `=` and the value's `Debug`; the fields whose
//! formatting is more than that (the message, which tracing-subscriber escapes, errors
//! with their sources, `r#` names) are handed to `DefaultVisitor` itself, so they cannot
//! drift from it. The tests compare both formatters line by line.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// `DefaultFields` without the empty ANSI styles. Only for writers without ANSI.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<'a> MakeVisitor<Writer<'a>> for PlainFields {
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        PlainVisitor {
            writer: target,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// The visitor [`PlainFields`] makes: `DefaultVisitor`'s output for a writer without ANSI.
#[derive(Debug)]
pub struct PlainVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

/// What `DefaultVisitor` does with a field of this name.
enum Kind {
    /// `name=value`.
    Plain,
    /// Skipped: `log.` metadata of events from the `log` crate, already in the line.
    Skipped,
    /// Formatted by `DefaultVisitor` (the message's escaping, `r#` names).
    Delegated,
}

fn kind(name: &str) -> Kind {
    if name.starts_with("log.") {
        Kind::Skipped
    } else if name == "message" || name.starts_with("r#") {
        Kind::Delegated
    } else {
        Kind::Plain
    }
}

impl PlainVisitor<'_> {
    /// Let `DefaultVisitor` write this field, with the same separator state.
    fn delegate(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut v = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut v);
        self.result = v.finish();
        self.is_empty = false;
    }

    fn plain(&mut self, name: &str, value: &dyn fmt::Debug) {
        self.plain_with(name, |w| write!(w, "{value:?}"));
    }

    /// `name=` and then `value` as written by `write_value`, which must be exactly its
    /// `Debug`.
    fn plain_with(&mut self, name: &str, write_value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.result = self.writer.write_char(' ');
        }
        // `DefaultVisitor` overwrites an error of the separator; so does this.
        self.result = self
            .writer
            .write_str(name)
            .and_then(|()| self.writer.write_char('='))
            .and_then(|()| write_value(&mut self.writer));
    }
}

/// `s`'s `Debug` (quoted and escaped) without the formatting machinery when nothing in it
/// needs escaping: printable ASCII other than `"` and `\` is written as it is.
fn write_str_debug(w: &mut Writer<'_>, s: &str) -> fmt::Result {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        w.write_char('"')?;
        w.write_str(s)?;
        w.write_char('"')
    } else {
        write!(w, "{s:?}")
    }
}

/// `n`'s `Debug` (decimal) without the formatting machinery.
fn write_u64(w: &mut Writer<'_>, n: u64) -> fmt::Result {
    w.write_str(itoa::Buffer::new().format(n))
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        match kind(field.name()) {
            Kind::Plain => self.plain_with(field.name(), |w| write_str_debug(w, value)),
            Kind::Skipped => {}
            Kind::Delegated => self.delegate(|v| v.record_str(field, value)),
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_err() {
            return;
        }
        match kind(field.name()) {
            Kind::Plain => self.plain_with(field.name(), |w| write_u64(w, value)),
            Kind::Skipped => {}
            Kind::Delegated => self.delegate(|v| v.record_u64(field, value)),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.result.is_err() {
            return;
        }
        match kind(field.name()) {
            Kind::Plain => self.plain_with(field.name(), |w| {
                w.write_str(if value { "true" } else { "false" })
            }),
            Kind::Skipped => {}
            Kind::Delegated => self.delegate(|v| v.record_bool(field, value)),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() {
            return;
        }
        match kind(field.name()) {
            Kind::Skipped => {}
            _ => self.delegate(|v| v.record_error(field, value)),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        match kind(field.name()) {
            Kind::Plain => self.plain(field.name(), value),
            Kind::Skipped => {}
            Kind::Delegated => self.delegate(|v| v.record_debug(field, value)),
        }
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
#[path = "plain_fields_tests.rs"]
mod tests;
