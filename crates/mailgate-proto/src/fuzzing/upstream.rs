//! The upstream targets: a hostile backend against the login relays.

use super::*;

pub(crate) fn addr(ip: &str, port: u16) -> ClientAddr {
    ClientAddr {
        ip: ip.into(),
        port,
    }
}

/// The IMAP login relay with a hostile backend: arbitrary responses in arbitrary splits,
/// for every credential form and with STARTTLS/ID forwarding toggled. Errors are final.
///
/// Byte 0: bits 0-1 credential form, 0x04 forward the client (ID), 0x08 STARTTLS, bits
/// 4-7 chunk size - 1.
pub fn imap_upstream(data: &[u8]) {
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
        client: addr("192.0.2.1", 1),
        connected: addr("192.0.2.2", 143),
        session_id: "s".into(),
        client_tls: false,
        proxy_ttl: crate::login::PROXY_TTL,
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
                Ok(Some(UpstreamAction::Send(bytes))) => {
                    assert!(bytes.ends_with(b"\r\n"), "command is not a line");
                }
                Ok(Some(UpstreamAction::CredentialsNext)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(up.next_action(), Err(e), "an error was not final");
                    return;
                }
            }
        }
    }
}

/// The POP3 login relay with a hostile backend: arbitrary bytes in arbitrary splits,
/// every credential kind, STLS and XCLIENT on or off. Errors are final, buffers bounded.
///
/// Byte 0: bits 0-3 chunk size - 1, 0x10 STLS, 0x20 XCLIENT, bits 6-7 credential form.
pub fn pop3_upstream(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        upstream_max_line: 128,
        upstream_max_untagged: 8,
        ..Limits::default()
    };
    let cap = limits.upstream_max_line;
    let config = UpstreamConfig {
        limits,
        starttls: control & 0x10 != 0,
        forward: (control & 0x20 != 0).then(|| ForwardInfo {
            client: addr("192.0.2.7", 4242),
            connected: addr("127.0.0.1", 4242),
            session_id: "s".into(),
            client_tls: false,
            proxy_ttl: crate::login::PROXY_TTL,
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
                Ok(Some(UpstreamAction::Send(bytes))) => {
                    assert!(bytes.ends_with(b"\r\n"), "command is not a line");
                }
                Ok(Some(UpstreamAction::CredentialsNext)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(up.next_action(), Err(e), "an error was not final");
                    break 'outer;
                }
            }
        }
        if done {
            break;
        }
    }
    assert!(up.into_remaining().len() <= cap, "engine holds too much");
}
