//! Parse cost of the pre-auth engines (ns/op): one LOGIN line, one AUTHENTICATE PLAIN
//! exchange with a continuation, and the upstream relay of a LOGIN. Each op builds a
//! fresh engine, as a new session does. Run with `cargo bench -p mailgate-proto`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mailgate_proto::imap::{ImapFront, ImapUpstream};
use mailgate_proto::{FrontAction, Limits, LoginRequest, UpstreamAction};
use mailgate_proto::{FrontConfig, UpstreamConfig};

fn config() -> FrontConfig {
    FrontConfig {
        require_tls_for_login: false,
        ..FrontConfig::default()
    }
}

/// Feed `steps` one after another; return the login the engine asked for.
fn login(steps: &[&[u8]]) -> Option<LoginRequest> {
    let mut front = ImapFront::new(config(), true);
    for step in steps {
        front.feed(step);
        while let Some(action) = front.next_action() {
            if let FrontAction::Login(req) = action {
                return Some(req);
            }
        }
    }
    None
}

fn front(c: &mut Criterion) {
    let quoted: &[u8] = b"a001 LOGIN \"alice@example.com\" \"correct horse \\\"battery\\\"\"\r\n";
    c.bench_function("imap_login_line_quoted", |b| {
        b.iter(|| login(&[black_box(quoted)]))
    });
    let literal: &[&[u8]] = &[
        b"a001 LOGIN {17}\r\n",
        b"alice@example.com {20}\r\n",
        b"correct horse staple\r\n",
    ];
    c.bench_function("imap_login_synchronizing_literals", |b| {
        b.iter(|| login(black_box(literal)))
    });
    let plain: &[&[u8]] = &[
        b"a002 AUTHENTICATE PLAIN\r\n",
        b"AGFsaWNlQGV4YW1wbGUuY29tAGNvcnJlY3QgaG9yc2U=\r\n",
    ];
    c.bench_function("imap_authenticate_plain_exchange", |b| {
        b.iter(|| login(black_box(plain)))
    });
    let plain_ir: &[u8] =
        b"a002 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGNvcnJlY3QgaG9yc2U=\r\n";
    c.bench_function("imap_authenticate_plain_sasl_ir", |b| {
        b.iter(|| login(&[black_box(plain_ir)]))
    });
}

fn upstream(c: &mut Criterion) {
    let Some(req) = login(&[b"a LOGIN alice@example.com \"pw\"\r\n"]) else {
        return;
    };
    let backend: &[u8] = b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] Dovecot ready.\r\n\
                           mg1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n";
    c.bench_function("imap_upstream_login_relay", |b| {
        b.iter(|| {
            let config = UpstreamConfig {
                limits: Limits::default(),
                starttls: false,
                forward: None,
            };
            let mut up = ImapUpstream::new(config, req.clone());
            up.feed(black_box(backend));
            while let Ok(Some(a)) = up.next_action() {
                if let UpstreamAction::Done(v) = a {
                    return Some(v);
                }
            }
            None
        })
    });
}

criterion_group!(benches, front, upstream);
criterion_main!(benches);
