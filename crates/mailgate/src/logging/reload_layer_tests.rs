//! A reload of `log.level` or `log.format` changes what is logged and how, span
//! directives included; a level that does not parse changes nothing.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailgate_config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

use super::{LogReload, reloadable};

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

impl Buf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    /// Everything logged before `marker`, once `marker` has arrived (lines arrive in
    /// order through the writer's queue), and the buffer emptied.
    fn until(&self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.text();
            if let Some(at) = text.find(marker) {
                self.0.lock().expect("lock").clear();
                return text[..at].to_string();
            }
            assert!(Instant::now() < deadline, "no {marker:?} in {text:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn cfg(level: &str, format: LogFormat) -> LogConfig {
    LogConfig {
        level: level.into(),
        format,
    }
}

/// A subscriber as `logging::init` builds it, writing to `buf`, and its reload handles.
fn setup(level: &str, buf: &Buf) -> (tracing::Dispatch, LogReload, super::super::WorkerGuard) {
    let (writer, guard) = super::super::non_blocking(buf.clone(), 1024);
    let (subscriber, handles) = reloadable(
        LogFormat::Text,
        EnvFilter::new(level),
        writer.clone(),
        false,
    );
    let reload = LogReload {
        handles,
        writer,
        ansi: false,
        env_override: false,
        current: Mutex::new(cfg(level, LogFormat::Text)),
    };
    (tracing::Dispatch::new(subscriber), reload, guard)
}

fn apply(reload: &LogReload, level: &str, format: LogFormat) -> Vec<&'static str> {
    let prepared = reload.prepare(&cfg(level, format)).expect("prepare");
    prepared.install().expect("install")
}

/// One callsite used before and after reloads: its cached interest must follow them.
fn same_callsite(tag: &str) {
    tracing::debug!(tag, "same-callsite");
}

#[test]
fn a_level_reload_changes_what_is_logged() {
    let buf = Buf::default();
    let (dispatch, reload, _guard) = setup("info", &buf);
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::debug!("debug-1");
        same_callsite("first");
        tracing::info!("info-1");
        tracing::info!("mark-1");
        let before = buf.until("mark-1");
        assert!(
            before.contains("info-1") && !before.contains("debug-1"),
            "{before}"
        );
        assert!(!before.contains("same-callsite"), "{before}");

        assert_eq!(apply(&reload, "debug", LogFormat::Text), ["log.level"]);
        tracing::debug!("debug-2");
        same_callsite("second");
        tracing::trace!("trace-2");
        tracing::info!("mark-2");
        // `log` records (rustls, ...) are let through to debug as well.
        assert!(
            log::max_level() >= log::LevelFilter::Debug,
            "{}",
            log::max_level()
        );
        let debug = buf.until("mark-2");
        assert!(
            debug.contains("debug-2") && !debug.contains("trace-2"),
            "{debug}"
        );
        assert!(debug.contains("same-callsite tag=\"second\""), "{debug}");

        assert_eq!(apply(&reload, "warn", LogFormat::Text), ["log.level"]);
        tracing::info!("info-3");
        same_callsite("third");
        tracing::warn!("mark-3");
        let warn = buf.until("mark-3");
        assert!(
            !warn.contains("info-3") && !warn.contains("same-callsite"),
            "{warn}"
        );

        // Not a filter: refused, and the level in force stays.
        assert!(reload.prepare(&cfg("mailgate=[", LogFormat::Text)).is_err());
        tracing::info!("info-4");
        tracing::error!("mark-4");
        assert!(!buf.until("mark-4").contains("info-4"));
        assert_eq!(reload.current().level, "warn");
    });
}

#[test]
fn span_directives_follow_the_span_across_reloads() {
    let buf = Buf::default();
    let (dispatch, reload, _guard) = setup("info,[conn]=debug", &buf);
    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!("conn", id = "mg-1");
        span.in_scope(|| tracing::debug!("inside-1"));
        tracing::debug!("outside-1");
        tracing::info!("mark-1");
        let first = buf.until("mark-1");
        assert!(first.contains("conn{id=\"mg-1\"}: "), "{first}");
        assert!(
            first.contains("inside-1") && !first.contains("outside-1"),
            "{first}"
        );

        // Without span directives: the span's context is still on its lines.
        apply(&reload, "info", LogFormat::Text);
        let span = tracing::info_span!("conn", id = "mg-2");
        span.in_scope(|| {
            tracing::debug!("inside-2");
            tracing::info!("info-inside-2");
        });
        tracing::info!("mark-2");
        let second = buf.until("mark-2");
        assert!(!second.contains("inside-2 "), "{second}");
        assert!(
            second.contains(
                "conn{id=\"mg-2\"}: mailgate::logging::reload_layer::tests: info-inside-2"
            ),
            "{second}"
        );

        // And back: a span opened after the reload is followed again.
        apply(&reload, "info,[conn]=debug", LogFormat::Text);
        let span = tracing::info_span!("conn", id = "mg-3");
        span.in_scope(|| tracing::debug!("inside-3"));
        tracing::debug!("outside-3");
        tracing::info!("mark-3");
        let third = buf.until("mark-3");
        assert!(
            third.contains("inside-3") && !third.contains("outside-3"),
            "{third}"
        );
    });
}

#[test]
fn a_format_reload_changes_the_lines() {
    let buf = Buf::default();
    let (dispatch, reload, _guard) = setup("info", &buf);
    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!("conn", listener = "imap");
        let _e = span.enter();
        tracing::info!(n = 1u64, "text-line");
        let text = buf.until("text-line");
        assert!(text.contains("INFO conn{listener=\"imap\"}: "), "{text}");

        assert_eq!(apply(&reload, "info", LogFormat::Json), ["log.format"]);
        tracing::info!(n = 2u64, "json-line");
        tracing::info!("mark");
        let json = buf.until("mark");
        let line = json
            .lines()
            .find(|l| l.contains("json-line"))
            .expect("line");
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(v["n"], 2);
        assert_eq!(v["message"], "json-line");
        // The span opened before the reload: named, its fields were formatted as text.
        assert_eq!(v["span"]["name"], "conn", "{line}");
        let fresh = tracing::info_span!("conn", listener = "pop3");
        fresh.in_scope(|| tracing::info!("fresh-line"));
        tracing::info!("mark-2");
        let json = buf.until("mark-2");
        let line = json
            .lines()
            .find(|l| l.contains("fresh-line"))
            .expect("line");
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(v["span"]["listener"], "pop3", "{line}");

        // Back to text: the old span's text fields are there again.
        assert_eq!(apply(&reload, "info", LogFormat::Text), ["log.format"]);
        tracing::info!("text-again");
        let text = buf.until("text-again");
        assert!(text.contains("INFO conn{listener=\"imap\"}: "), "{text}");
    });
}
