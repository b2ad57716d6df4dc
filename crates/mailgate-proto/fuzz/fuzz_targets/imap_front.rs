//! Fuzz the client-facing IMAP engine: arbitrary bytes in arbitrary splits, logins
//! answered with every verdict, STARTTLS completed. Checks the engine never panics and
//! never holds more than its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_proto::FrontConfig;
use mailgate_proto::action::BackendReply;
use mailgate_proto::imap::ImapFront;
use mailgate_proto::{FrontAction, Limits, LoginVerdict};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_line: 256,
        max_literal: 128,
        max_bad_commands: 20,
        ..Limits::default()
    };
    let cap = limits.max_line + 2 * limits.max_literal;
    let config = FrontConfig {
        limits,
        require_tls_for_login: control & 0x10 != 0,
        oauth: control & 0x20 != 0,
        ..FrontConfig::default()
    };
    let mut front = ImapFront::new(config, control & 0x40 != 0);
    let _ = front.greeting();
    let chunk = usize::from(control & 0x0f) + 1;
    let mut verdicts = 0u8;
    for piece in input.chunks(chunk) {
        front.feed(piece);
        while let Some(action) = front.next_action() {
            match action {
                FrontAction::Login(_) => {
                    verdicts = verdicts.wrapping_add(1);
                    let reply = BackendReply {
                        untagged: b"* CAPABILITY IMAP4rev1\r\n".to_vec(),
                        status: b"OK done".to_vec(),
                    };
                    let verdict = match verdicts % 4 {
                        0 => LoginVerdict::Accepted(reply),
                        1 => LoginVerdict::Rejected(reply),
                        2 => LoginVerdict::AuthFailed,
                        _ => LoginVerdict::Unavailable("down\r\n".into()),
                    };
                    let _ = front.login_result(verdict);
                }
                FrontAction::StartTls => front.tls_started(),
                FrontAction::Send(_) | FrontAction::Close(_) => {}
            }
        }
        assert!(front.buffered() <= cap + chunk);
        if front.is_finished() {
            break;
        }
    }
    let _ = front.client_id();
    let _ = front.into_remaining();
});
