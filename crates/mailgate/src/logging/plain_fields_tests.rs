//! `PlainFields` writes what `DefaultFields` writes without ANSI, byte for byte.

use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

use super::PlainFields;
use crate::logging::plain_line::PlainLine;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("outer failure")]
struct Outer(#[source] io::Error);

#[derive(Debug, thiserror::Error)]
#[error("alone")]
struct Alone;

/// Every kind of field mailgate's events and spans carry, and the odd ones.
fn events() {
    let peer: std::net::SocketAddr = "192.0.2.7:40001".parse().expect("addr");
    let span = tracing::info_span!("conn", listener = "imap", peer = %peer, id = %format_args!("mg-{:x}", 255), late = tracing::field::Empty);
    let _g = span.enter();
    tracing::info!(
        client = %peer,
        domain = "example.com",
        backend = "-",
        bytes_up = 12u64,
        bytes_down = 0u64,
        duration_ms = 3u64,
        failed_logins = 0u32,
        outcome = "logout",
        detail = "",
        "session closed"
    );
    span.record("late", 7u64);
    let inner = tracing::warn_span!("inner", r#type = "x", flag = true);
    let _i = inner.enter();
    tracing::warn!(
        neg = -5i64,
        float = 1.5f64,
        big = u128::MAX,
        quoted = "a \"b\" \\ c\u{1b}[31m é",
        dbg = ?vec!["x", "y"],
        r#type = "kw",
        "message with {} and \u{1b}[2J escape",
        "args"
    );
    let e = Outer(io::Error::other("inner cause"));
    tracing::error!(error = &e as &(dyn std::error::Error + 'static), "failed");
    tracing::error!(
        error = &Alone as &(dyn std::error::Error + 'static),
        after = 1u8
    );
    tracing::info!(only = "fields", message = "explicit message");
    tracing::info!("");
    tracing::trace!(level = "trace", "every level");
    tracing::debug!(
        empty = "",
        zero = 0u64,
        max = u64::MAX,
        min = i64::MIN,
        no = false
    );
    tracing::debug!(
        apostrophe = "it's",
        tab = "a\tb",
        del = "x\u{7f}",
        nul = "\0",
        c1 = "\u{85}"
    );
    tracing::debug!(
        unicode = "日本",
        combining = "e\u{301}",
        quote = "\"",
        backslash = "\\"
    );
}

/// The formatters under test: tracing-subscriber's, ours for the fields, ours for both.
#[derive(Clone, Copy)]
enum Formatters {
    Default,
    Fields,
    FieldsAndLine,
}

fn render(which: Formatters) -> String {
    let buf = Buf::default();
    let base = tracing_subscriber::fmt::layer()
        .with_writer(buf.clone())
        .with_ansi(false);
    let layer: Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> =
        match which {
            Formatters::Default => Box::new(base.without_time()),
            Formatters::Fields => Box::new(base.without_time().fmt_fields(PlainFields)),
            Formatters::FieldsAndLine => Box::new(
                base.event_format(PlainLine { time: false })
                    .fmt_fields(PlainFields),
            ),
        };
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::filter::LevelFilter::TRACE);
    tracing::subscriber::with_default(subscriber, || {
        events();
        // An event of the `log` crate: its own target and level.
        let record = log::Record::builder()
            .args(format_args!("from log"))
            .level(log::Level::Warn)
            .target("some::crate")
            .module_path(Some("some::crate"))
            .build();
        tracing_log::format_trace(&record).expect("log record");
    });
    String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf-8")
}

#[test]
fn the_same_bytes_as_default_fields() {
    let default = render(Formatters::Default);
    assert!(default.lines().count() >= 6, "{default}");
    assert!(default.contains("session closed client=192.0.2.7:40001 domain=\"example.com\""));
    assert!(default.contains("late=7"), "{default}");
    assert!(
        default.contains("\\x1b"),
        "the message is escaped: {default}"
    );
    assert!(default.contains(" WARN some::crate: from log"), "{default}");
    for plain in [
        render(Formatters::Fields),
        render(Formatters::FieldsAndLine),
    ] {
        for (d, p) in default.lines().zip(plain.lines()) {
            assert_eq!(d, p);
        }
        assert_eq!(default, plain);
    }
}

/// The time of a line: what tracing-subscriber's `SystemTime` writes, between the times
/// before and after the event.
#[test]
fn the_time_as_tracing_subscriber_writes_it() {
    let lines = |which: Formatters| {
        let buf = Buf::default();
        let base = tracing_subscriber::fmt::layer()
            .with_writer(buf.clone())
            .with_ansi(false);
        let layer: Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> =
            match which {
                Formatters::FieldsAndLine => Box::new(
                    base.event_format(PlainLine { time: true })
                        .fmt_fields(PlainFields),
                ),
                _ => Box::new(base),
            };
        let subscriber = tracing_subscriber::registry().with(layer);
        let before = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        tracing::subscriber::with_default(subscriber, || tracing::info!(n = 1u64, "timed"));
        let after = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        let line = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf-8");
        let (time, rest) = line.split_at(before.len());
        assert!(
            before.as_str() <= time && time <= after.as_str(),
            "{before} {line} {after}"
        );
        assert_eq!(time.len(), "2026-12-01T17:40:00.123456Z".len(), "{line}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{line}");
        rest.to_string()
    };
    assert_eq!(lines(Formatters::Default), lines(Formatters::FieldsAndLine));
}
