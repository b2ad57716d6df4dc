//! Fuzz the backend-facing POP3 login relay with a hostile backend: arbitrary bytes in
//! arbitrary splits, every credential kind, STLS and XCLIENT on or off. Checks it never
//! panics, never holds more than its limits, and that errors are final.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_proto::UpstreamConfig;
use mailgate_proto::pop3::Pop3Upstream;
use mailgate_proto::{
    ClientAddr, Credentials, ForwardInfo, Limits, LoginRequest, OAuthMechanism, Secret,
    UpstreamAction,
};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        upstream_max_line: 128,
        upstream_max_untagged: 8,
        ..Limits::default()
    };
    let cap = limits.upstream_max_line;
    let addr = |ip: &str| ClientAddr {
        ip: ip.into(),
        port: 4242,
    };
    let config = UpstreamConfig {
        limits,
        starttls: control & 0x10 != 0,
        forward: (control & 0x20 != 0).then(|| ForwardInfo {
            client: addr("192.0.2.7"),
            connected: addr("127.0.0.1"),
            session_id: "s".into(),
            client_id: Vec::new(),
        }),
    };
    let credentials = match control >> 6 {
        0 => Credentials::Password {
            authzid: None,
            authcid: "alice".into(),
            password: Secret::new("pw"),
        },
        1 => Credentials::Password {
            authzid: Some("admin".into()),
            authcid: "alice".into(),
            password: Secret::new("x".repeat(300)),
        },
        2 => Credentials::OAuth {
            mechanism: OAuthMechanism::XOAuth2,
            user: "a".into(),
            initial_response: Secret::new("user=a\x01auth=Bearer t\x01\x01"),
        },
        _ => Credentials::OAuth {
            mechanism: OAuthMechanism::OAuthBearer,
            user: "a".into(),
            initial_response: Secret::new("n,a=a,\x01auth=Bearer t\x01\x01"),
        },
    };
    let mut up = Pop3Upstream::new(config, LoginRequest { credentials });
    let chunk = usize::from(control & 0x0f) + 1;
    let mut done = false;
    'outer: for piece in input.chunks(chunk) {
        up.feed(piece);
        loop {
            match up.next_action() {
                Ok(Some(UpstreamAction::StartTls)) => up.tls_started(),
                Ok(Some(UpstreamAction::Done(_))) => done = true,
                Ok(Some(UpstreamAction::Send(bytes))) => assert!(bytes.ends_with(b"\r\n")),
                Ok(Some(UpstreamAction::CredentialsNext)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(up.next_action(), Err(e));
                    break 'outer;
                }
            }
        }
        if done {
            break;
        }
    }
    assert!(up.into_remaining().len() <= cap);
});
