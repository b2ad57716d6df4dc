//! `PlainFields` writes what `DefaultFields` writes without ANSI, byte for byte.

use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

use super::PlainFields;

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

fn render(plain: bool) -> String {
    let buf = Buf::default();
    let base = tracing_subscriber::fmt::layer()
        .with_writer(buf.clone())
        .with_ansi(false)
        .without_time();
    let layer: Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> =
        if plain {
            Box::new(base.fmt_fields(PlainFields))
        } else {
            Box::new(base)
        };
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::filter::LevelFilter::TRACE);
    tracing::subscriber::with_default(subscriber, events);
    String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf-8")
}

#[test]
fn the_same_bytes_as_default_fields() {
    let default = render(false);
    let plain = render(true);
    assert!(default.lines().count() >= 6, "{default}");
    assert!(default.contains("session closed client=192.0.2.7:40001 domain=\"example.com\""));
    assert!(default.contains("late=7"), "{default}");
    assert!(
        default.contains("\\x1b"),
        "the message is escaped: {default}"
    );
    for (d, p) in default.lines().zip(plain.lines()) {
        assert_eq!(d, p);
    }
    assert_eq!(default, plain);
}
