//! Bodies of the fuzz targets in `crates/mailgate-proto/fuzz`, shared with the corpus
//! replay test (`tests/fuzz_corpus.rs`) so that `cargo test` runs every committed seed
//! through exactly what the fuzzer runs. Not an API: each function takes the fuzzer's
//! bytes, drives engines and panics when an oracle fails.
//!
//! Oracles beyond "never panics, never holds more than its limits":
//! - a client's bytes never produce a backend-fault answer (`[UNAVAILABLE]`,
//!   `[SERVERBUG]`, `[SYS/TEMP]`) from a front engine, and a client's login relayed to a
//!   well-behaved backend ([`imap_relay`], [`pop3_relay`]) never ends in an
//!   [`UpstreamError`] or a temporary verdict; the backend receives the credentials
//!   exactly as the client gave them, one well-formed command at a time;
//! - no `+` continuation follows a literal announced over `max_literal` (or a
//!   non-synchronizing one);
//! - after STARTTLS/STLS, bytes that arrived before the handshake are never parsed: the
//!   engine closes with `StartTlsInjection`, and right after `tls_started()` it has nothing
//!   to say until the client speaks again.
#![allow(clippy::missing_panics_doc)]

mod relay;
mod relay_imap;
mod relay_pop3;
mod upstream;

pub use relay_imap::imap_relay;
pub use relay_pop3::pop3_relay;
pub use upstream::{imap_upstream, pop3_upstream};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::action::BackendReply;
use crate::imap::{ImapFront, ImapUpstream};
use crate::pop3::{Pop3Front, Pop3Upstream};
use crate::{
    ClientAddr, CloseReason, Credentials, ForwardInfo, FrontAction, FrontConfig, Limits,
    LoginRequest, LoginVerdict, OAuthMechanism, Secret, TempScope, UpstreamAction, UpstreamConfig,
    UpstreamError,
};

/// Response codes that blame the backend. A client's own bytes must never make mailgate
/// answer with one of them.
pub(crate) const BACKEND_FAULT_CODES: [&[u8]; 3] =
    [b"[UNAVAILABLE]", b"[SERVERBUG]", b"[SYS/TEMP]"];

pub(crate) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// IMAP: no line of `out` carries a backend-fault code after its tag (the tag is the
/// client's own choice and may be anything).
pub(crate) fn assert_no_imap_fault(out: &[u8], context: &str) {
    for line in out.split(|b| *b == b'\n') {
        let text = match line.iter().position(|b| *b == b' ') {
            Some(sp) => &line[sp + 1..],
            None => line,
        };
        for code in BACKEND_FAULT_CODES {
            assert!(
                !contains_ci(text, code),
                "{context}: client bytes alone produced a backend-fault answer"
            );
        }
    }
}

/// POP3: replies never echo the client, so no byte of `out` may carry a fault code.
pub(crate) fn assert_no_pop3_fault(out: &[u8], context: &str) {
    for code in BACKEND_FAULT_CODES {
        assert!(
            !contains_ci(out, code),
            "{context}: client bytes alone produced a backend-fault answer"
        );
    }
}

/// The literal `{n}` / `{n+}` announced at the end of `line` (CR/LF stripped) that a
/// server must not answer with `+`: over `max_literal`, or non-synchronizing.
pub(crate) fn forbids_continuation(line: &[u8], max_literal: usize) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(inner) = line.strip_suffix(b"}") else {
        return false;
    };
    let Some(open) = inner.iter().rposition(|b| *b == b'{') else {
        return false;
    };
    let spec = &inner[open + 1..];
    if spec.strip_suffix(b"+").is_some() {
        return true;
    }
    if spec.is_empty() || !spec.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let size = spec.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    size > max_literal as u64
}

/// The input so far ends with a complete `STARTTLS` (or `STLS`) command line: nothing
/// follows it that the engine could have swallowed.
pub(crate) fn ends_with_command(fed: &[u8], name: &[u8]) -> bool {
    let line = fed.strip_suffix(b"\n").unwrap_or(fed);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    fed.ends_with(b"\n") && line.len() >= name.len() && {
        let tail = &line[line.len() - name.len()..];
        tail.eq_ignore_ascii_case(name)
    }
}

pub(crate) fn imap_reply(status: &str) -> BackendReply {
    BackendReply {
        untagged: b"* CAPABILITY IMAP4rev1\r\n".to_vec(),
        status: status.as_bytes().to_vec(),
    }
}

/// The client-facing IMAP engine: arbitrary bytes in arbitrary splits, logins answered
/// with every verdict, STARTTLS completed or followed by injected bytes.
///
/// Byte 0: bits 0-3 chunk size - 1, 0x10 require TLS for login, 0x20 OAuth, 0x40 implicit
/// TLS, 0x80 inject the next chunk between STARTTLS and the handshake.
pub fn imap_front(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_line: 256,
        max_sasl_line: 512,
        max_id_line: 1024,
        max_literal: 128,
        max_bad_commands: 20,
        ..Limits::default()
    };
    let cap = limits
        .max_line
        .max(limits.max_sasl_line)
        .max(limits.max_id_line)
        + 2 * limits.max_literal;
    let max_literal = limits.max_literal;
    let config = FrontConfig {
        limits,
        require_tls_for_login: control & 0x10 != 0,
        oauth: control & 0x20 != 0,
        ..FrontConfig::default()
    };
    let inject = control & 0x80 != 0;
    let mut front = ImapFront::new(config, control & 0x40 != 0);
    assert_no_imap_fault(&front.greeting(), "greeting");
    let chunk = usize::from(control & 0x0f) + 1;
    let mut fed: Vec<u8> = Vec::with_capacity(input.len());
    let mut verdicts = 0u8;
    let mut tls_pending = false;
    for piece in input.chunks(chunk) {
        fed.extend_from_slice(piece);
        front.feed(piece);
        if tls_pending {
            // The client spoke between the STARTTLS OK and the handshake.
            assert_eq!(
                front.next_action(),
                Some(FrontAction::Close(CloseReason::StartTlsInjection)),
                "bytes before the TLS handshake were not refused"
            );
            assert_eq!(front.next_action(), None, "an action after the close");
            return;
        }
        // Oracle (ii), exact with one byte per read: the line that just ended announced a
        // literal that must not get a `+`.
        let no_plus = chunk == 1 && piece == b"\n" && {
            let line_end = fed.len() - 1;
            let start = fed[..line_end]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1);
            forbids_continuation(&fed[start..line_end], max_literal)
        };
        while let Some(action) = front.next_action() {
            match action {
                FrontAction::Login(_) => {
                    verdicts = verdicts.wrapping_add(1);
                    let (verdict, client_fault) = match verdicts % 5 {
                        0 => (LoginVerdict::Accepted(imap_reply("OK Logged in")), true),
                        1 => (
                            LoginVerdict::Rejected(imap_reply(
                                "NO [AUTHENTICATIONFAILED] Authentication failed.",
                            )),
                            true,
                        ),
                        2 => (LoginVerdict::AuthFailed, true),
                        3 => (
                            LoginVerdict::Temporary(
                                imap_reply("NO [UNAVAILABLE] busy"),
                                TempScope::Backend,
                            ),
                            false,
                        ),
                        _ => (LoginVerdict::Unavailable("down\r\n".into()), false),
                    };
                    let out = front.login_result(verdict);
                    assert!(out.ends_with(b"\r\n"), "login answer is not a line");
                    if client_fault {
                        assert_no_imap_fault(&out, "login answer");
                    }
                }
                FrontAction::StartTls => {
                    assert!(
                        ends_with_command(&fed, b"STARTTLS"),
                        "STARTTLS accepted with bytes after it"
                    );
                    if inject {
                        tls_pending = true;
                    } else {
                        front.tls_started();
                        assert_eq!(
                            front.next_action(),
                            None,
                            "bytes from before the TLS handshake were parsed"
                        );
                    }
                }
                FrontAction::Send(bytes) => {
                    assert!(
                        !(no_plus && bytes.starts_with(b"+")),
                        "`+` continuation for a refused literal"
                    );
                    assert_no_imap_fault(&bytes, "reply");
                }
                FrontAction::Close(_) => {}
            }
        }
        assert!(front.buffered() <= cap + chunk, "engine holds too much");
        if front.is_finished() {
            break;
        }
    }
    let _ = front.client_id();
    let finished = front.is_finished();
    let remaining = front.into_remaining();
    if finished {
        // What the client pipelined after its login reaches the backend unchanged.
        assert!(fed.ends_with(&remaining), "pipelined bytes changed or lost");
    }
}

/// The client-facing POP3 engine: arbitrary bytes in arbitrary splits, logins answered
/// with every verdict, STLS completed or followed by injected bytes.
///
/// Byte 0: bits 0-3 chunk size - 1, 0x10 require TLS for login, 0x20 OAuth, 0x40 implicit
/// TLS, 0x80 inject the next chunk between STLS and the handshake.
pub fn pop3_front(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        pop3_max_line: 64,
        pop3_max_sasl_line: 256,
        max_bad_commands: 20,
        ..Limits::default()
    };
    let cap = limits.pop3_max_sasl_line;
    let config = FrontConfig {
        limits,
        require_tls_for_login: control & 0x10 != 0,
        oauth: control & 0x20 != 0,
        ..FrontConfig::default()
    };
    let inject = control & 0x80 != 0;
    let mut front = Pop3Front::new(config, control & 0x40 != 0);
    assert_no_pop3_fault(&front.greeting(), "greeting");
    let chunk = usize::from(control & 0x0f) + 1;
    let mut fed: Vec<u8> = Vec::with_capacity(input.len());
    let mut verdicts = 0u8;
    let mut tls_pending = false;
    for piece in input.chunks(chunk) {
        fed.extend_from_slice(piece);
        front.feed(piece);
        assert!(front.buffered_len() <= cap, "engine holds too much");
        if tls_pending {
            // The client spoke after the STLS OK, before the handshake: the engine may
            // refuse at once, and must at least drop the bytes at the handshake.
            match front.next_action() {
                None => {
                    front.tls_started();
                    assert_eq!(front.buffered_len(), 0, "bytes from before STLS kept");
                    assert_eq!(front.next_action(), None, "bytes from before STLS parsed");
                }
                Some(FrontAction::Close(CloseReason::StartTlsInjection)) => {}
                Some(_) => panic!("bytes before the TLS handshake were parsed"),
            }
            return;
        }
        while let Some(action) = front.next_action() {
            match action {
                FrontAction::Login(_) => {
                    verdicts = verdicts.wrapping_add(1);
                    let reply = |status: &str| BackendReply {
                        untagged: Vec::new(),
                        status: status.as_bytes().to_vec(),
                    };
                    let (verdict, client_fault) = match verdicts % 5 {
                        0 => (LoginVerdict::Accepted(reply("+OK in")), true),
                        1 => (
                            LoginVerdict::Rejected(reply("-ERR [AUTH] Authentication failed.")),
                            true,
                        ),
                        2 => (LoginVerdict::AuthFailed, true),
                        3 => (
                            LoginVerdict::Temporary(
                                reply("-ERR [SYS/TEMP] busy"),
                                TempScope::Backend,
                            ),
                            false,
                        ),
                        _ => (LoginVerdict::Unavailable("down\r\n".into()), false),
                    };
                    let out = front.login_result(verdict);
                    assert!(out.ends_with(b"\r\n"), "login answer is not a line");
                    assert!(
                        !out[..out.len() - 2].contains(&b'\n'),
                        "login answer is more than one line"
                    );
                    if client_fault {
                        assert_no_pop3_fault(&out, "login answer");
                    }
                }
                FrontAction::StartTls => {
                    assert!(
                        ends_with_command(&fed, b"STLS"),
                        "STLS accepted with bytes after it"
                    );
                    if inject {
                        tls_pending = true;
                    } else {
                        front.tls_started();
                        assert_eq!(
                            front.next_action(),
                            None,
                            "bytes from before the TLS handshake were parsed"
                        );
                    }
                }
                FrontAction::Send(bytes) => {
                    assert!(bytes.ends_with(b"\r\n"), "reply is not a line");
                    assert_no_pop3_fault(&bytes, "reply");
                }
                FrontAction::Close(_) => {}
            }
        }
        if front.is_done() {
            break;
        }
    }
    let finished = front.is_done();
    let remaining = front.into_remaining();
    assert!(remaining.len() <= cap, "engine holds too much");
    if finished {
        // What the client pipelined after its login reaches the backend unchanged.
        assert!(fed.ends_with(&remaining), "pipelined bytes changed or lost");
    }
}
