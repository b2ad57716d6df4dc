//! Fuzz the IMAP login relay with a hostile backend: arbitrary responses in arbitrary
//! splits, for every credential form and with STARTTLS/ID forwarding toggled.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailgate_proto::UpstreamConfig;
use mailgate_proto::imap::ImapUpstream;
use mailgate_proto::{
    ClientAddr, Credentials, ForwardInfo, Limits, LoginRequest, OAuthMechanism, Secret,
    UpstreamAction,
};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let credentials = match control & 0x03 {
        0 => Credentials::Password {
            authzid: None,
            authcid: "alice".into(),
            password: Secret::new("p\"w"),
        },
        1 => Credentials::Password {
            authzid: None,
            authcid: "alice".into(),
            password: Secret::new("pä"),
        },
        2 => Credentials::Password {
            authzid: Some("z".into()),
            authcid: "alice".into(),
            password: Secret::new("pw"),
        },
        _ => Credentials::OAuth {
            mechanism: OAuthMechanism::XOAuth2,
            user: "alice".into(),
            initial_response: Secret::new("user=alice\x01auth=Bearer t\x01\x01"),
        },
    };
    let forward = (control & 0x04 != 0).then(|| ForwardInfo {
        client: ClientAddr {
            ip: "192.0.2.1".into(),
            port: 1,
        },
        connected: ClientAddr {
            ip: "192.0.2.2".into(),
            port: 143,
        },
        session_id: "s".into(),
        client_id: vec![("name".into(), Some("x".into()))],
    });
    let config = UpstreamConfig {
        limits: Limits {
            upstream_max_line: 512,
            upstream_max_untagged: 16,
            ..Limits::default()
        },
        starttls: control & 0x08 != 0,
        forward,
    };
    let mut up = ImapUpstream::new(config, LoginRequest { credentials });
    let chunk = usize::from(control >> 4) + 1;
    for piece in input.chunks(chunk) {
        up.feed(piece);
        loop {
            match up.next_action() {
                Ok(Some(UpstreamAction::StartTls)) => up.tls_started(),
                Ok(Some(UpstreamAction::Done(_))) => return,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
