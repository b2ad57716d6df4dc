//! Fuzz the client-facing POP3 engine: arbitrary bytes in arbitrary splits, logins
//! answered with every verdict, STLS completed. Checks the engine never panics and never
//! holds more than its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_proto::FrontConfig;
use mailgate_proto::action::BackendReply;
use mailgate_proto::pop3::Pop3Front;
use mailgate_proto::{FrontAction, Limits, LoginVerdict};

fuzz_target!(|data: &[u8]| {
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
    let mut front = Pop3Front::new(config, control & 0x40 != 0);
    let _ = front.greeting();
    let chunk = usize::from(control & 0x0f) + 1;
    let mut verdicts = 0u8;
    for piece in input.chunks(chunk) {
        front.feed(piece);
        assert!(front.buffered_len() <= cap);
        while let Some(action) = front.next_action() {
            match action {
                FrontAction::Login(_) => {
                    verdicts = verdicts.wrapping_add(1);
                    let status = if verdicts % 4 == 0 {
                        "+OK in"
                    } else {
                        "-ERR [AUTH] no"
                    };
                    let reply = BackendReply {
                        untagged: Vec::new(),
                        status: status.as_bytes().to_vec(),
                    };
                    let verdict = match verdicts % 4 {
                        0 => LoginVerdict::Accepted(reply),
                        1 => LoginVerdict::Rejected(reply),
                        2 => LoginVerdict::AuthFailed,
                        _ => LoginVerdict::Unavailable("down\r\n".into()),
                    };
                    let out = front.login_result(verdict);
                    assert!(out.ends_with(b"\r\n"));
                    assert!(!out[..out.len() - 2].contains(&b'\n'));
                }
                FrontAction::StartTls => front.tls_started(),
                FrontAction::Send(bytes) => assert!(bytes.ends_with(b"\r\n")),
                FrontAction::Close(_) => {}
            }
        }
        if front.is_done() {
            break;
        }
    }
    assert!(front.into_remaining().len() <= cap);
});
