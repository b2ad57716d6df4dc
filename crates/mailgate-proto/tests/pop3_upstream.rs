//! Known-answer tables for the backend-facing POP3 login relay (issue 2). Transcripts
//! follow what Dovecot 2.3.19 answers (checked against a real instance).

use mailgate_proto::UpstreamConfig;
use mailgate_proto::action::BackendReply;
use mailgate_proto::pop3::Pop3Upstream;
use mailgate_proto::{
    ClientAddr, Credentials, ForwardInfo, Limits, LoginRequest, LoginVerdict, OAuthMechanism,
    Secret, UpstreamAction, UpstreamError,
};

use UpstreamAction::{CredentialsNext, Done, Send, StartTls};

fn cfg(starttls: bool, forward: bool) -> UpstreamConfig {
    let addr = |ip: &str, port| ClientAddr {
        ip: ip.into(),
        port,
    };
    UpstreamConfig {
        limits: Limits::default(),
        starttls,
        forward: forward.then(|| ForwardInfo {
            client: addr("2001:db8::44", 50123),
            connected: addr("192.0.2.1", 110),
            session_id: "s1".into(),
            client_tls: false,
            proxy_ttl: mailgate_proto::login::PROXY_TTL,
            // A client's forged fields: POP3 has no client ID, and none of it may appear.
            client_id: vec![
                ("x-forward-foo".into(), Some("1".into())),
                ("x-proxy-ttl".into(), Some("0".into())),
            ],
        }),
    }
}

fn pw(authzid: Option<&str>, user: &str, pass: &str) -> LoginRequest {
    LoginRequest {
        credentials: Credentials::Password {
            authzid: authzid.map(str::to_string),
            authcid: user.into(),
            password: Secret::new(pass),
        },
    }
}

fn run(u: &mut Pop3Upstream, input: &[u8]) -> Result<Vec<UpstreamAction>, UpstreamError> {
    u.feed(input);
    let mut out = Vec::new();
    while let Some(a) = u.next_action()? {
        out.push(a);
    }
    Ok(out)
}

fn send(s: &str) -> UpstreamAction {
    Send(s.as_bytes().to_vec())
}

fn verdict(accepted: bool, status: &str) -> UpstreamAction {
    let reply = BackendReply {
        untagged: vec![],
        status: status.as_bytes().to_vec(),
    };
    Done(if accepted {
        LoginVerdict::Accepted(reply)
    } else {
        LoginVerdict::Rejected(reply)
    })
}

const DOVECOT_CAPA: &[u8] = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n\
AUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n";

#[test]
fn user_pass_accepted_with_remaining() {
    let mut u = Pop3Upstream::new(cfg(false, false), pw(None, "alice@example.com", "s p"));
    assert_eq!(
        run(
            &mut u,
            b"+OK <1896.697170952@dbc.mtview.ca.us> Dovecot ready.\r\n"
        ),
        Ok(vec![send("CAPA\r\n")])
    );
    // Dovecot lists PIPELINING: PASS goes with USER.
    assert_eq!(
        run(&mut u, DOVECOT_CAPA),
        Ok(vec![
            CredentialsNext,
            send("USER alice@example.com\r\n"),
            send("PASS s p\r\n")
        ])
    );
    assert_eq!(run(&mut u, b"+OK\r\n"), Ok(vec![]));
    assert_eq!(
        run(&mut u, b"+OK Logged in.\r\n+OK 0 messages\r\n"),
        Ok(vec![verdict(true, "+OK Logged in.")])
    );
    assert_eq!(u.into_remaining(), b"+OK 0 messages\r\n");
}

#[test]
fn wrong_password_is_rejected_with_backend_text() {
    let mut u = Pop3Upstream::new(cfg(false, false), pw(None, "alice", "bad"));
    let all = run(
        &mut u,
        b"+OK ready\r\n-ERR unknown command\r\n+OK\r\n-ERR [AUTH] Authentication failed.\r\n",
    );
    assert_eq!(
        all,
        Ok(vec![
            send("CAPA\r\n"),
            CredentialsNext,
            send("USER alice\r\n"),
            send("PASS bad\r\n"),
            verdict(false, "-ERR [AUTH] Authentication failed.")
        ])
    );
}

#[test]
fn authzid_uses_auth_plain() {
    let mut u = Pop3Upstream::new(cfg(false, false), pw(Some("admin"), "alice", "pw"));
    run(&mut u, b"+OK hi\r\n").ok();
    assert_eq!(
        run(&mut u, DOVECOT_CAPA),
        Ok(vec![
            CredentialsNext,
            send("AUTH PLAIN YWRtaW4AYWxpY2UAcHc=\r\n")
        ])
    );
    assert_eq!(
        run(&mut u, b"+OK Logged in.\r\n"),
        Ok(vec![verdict(true, "+OK Logged in.")])
    );
}

#[test]
fn unsafe_or_long_passwords_use_auth_plain_via_continuation() {
    let long = "x".repeat(300);
    let mut u = Pop3Upstream::new(cfg(false, false), pw(None, "alice", &long));
    run(&mut u, b"+OK hi\r\n").ok();
    assert_eq!(
        run(&mut u, DOVECOT_CAPA),
        Ok(vec![CredentialsNext, send("AUTH PLAIN\r\n")])
    );
    let got = run(&mut u, b"+ \r\n").expect("continuation");
    match &got[..] {
        [Send(line)] => assert!(line.starts_with(b"AGFsaWNlAHh4") && line.ends_with(b"\r\n")),
        other => panic!("unexpected {other:?}"),
    }
    // A second challenge to PLAIN is not the protocol.
    assert_eq!(run(&mut u, b"+ \r\n"), Err(UpstreamError::Malformed));
    assert_eq!(u.next_action(), Err(UpstreamError::Malformed));
    // CR in a password cannot go into PASS.
    let mut u = Pop3Upstream::new(cfg(false, false), pw(None, "a", "p\rq"));
    let got = run(&mut u, b"+OK\r\n-ERR\r\n").expect("ok");
    assert_eq!(got[2], send("AUTH PLAIN AGEAcA1x\r\n"));
}

#[test]
fn oauth_replay_and_error_challenge() {
    let login = LoginRequest {
        credentials: Credentials::OAuth {
            mechanism: OAuthMechanism::XOAuth2,
            user: "a".into(),
            initial_response: Secret::new("user=a\x01auth=Bearer t\x01\x01"),
        },
    };
    let mut u = Pop3Upstream::new(cfg(false, false), login);
    let got = run(&mut u, b"+OK hi\r\n+OK\r\nSASL XOAUTH2\r\n.\r\n");
    assert_eq!(
        got,
        Ok(vec![
            send("CAPA\r\n"),
            CredentialsNext,
            send("AUTH XOAUTH2 dXNlcj1hAWF1dGg9QmVhcmVyIHQBAQ==\r\n")
        ])
    );
    assert_eq!(
        run(&mut u, b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
        Ok(vec![send("\r\n")])
    );
    assert_eq!(
        run(&mut u, b"-ERR [AUTH] Invalid token\r\n"),
        Ok(vec![verdict(false, "-ERR [AUTH] Invalid token")])
    );
}

/// Real OAuth tokens (JWTs) do not fit one 255-octet POP3 command: `AUTH XOAUTH2` goes
/// alone, the response follows on the first `+`, and a rejection comes as a second `+`
/// (the error challenge) and then `-ERR [AUTH]`. That is a refused credential, never a
/// backend fault — for every token size from 1 to 8 KB.
#[test]
fn long_oauth_tokens_rejected_as_credentials() {
    for mech in [OAuthMechanism::XOAuth2, OAuthMechanism::OAuthBearer] {
        for kb in 1..=8usize {
            let token = "t".repeat(kb * 1024);
            let response = match mech {
                OAuthMechanism::XOAuth2 => format!("user=a@b\x01auth=Bearer {token}\x01\x01"),
                OAuthMechanism::OAuthBearer => format!("n,a=a@b,\x01auth=Bearer {token}\x01\x01"),
            };
            let login = LoginRequest {
                credentials: Credentials::OAuth {
                    mechanism: mech,
                    user: "a@b".into(),
                    initial_response: Secret::new(response.as_bytes()),
                },
            };
            let mut u = Pop3Upstream::new(cfg(false, false), login);
            let capa = format!("+OK hi\r\n+OK\r\nSASL {}\r\n.\r\n", mech.name());
            let got = run(&mut u, capa.as_bytes()).expect("capa");
            assert_eq!(
                got.last(),
                Some(&send(&format!("AUTH {}\r\n", mech.name())))
            );
            // First `+`: the response itself, base64 on its own line.
            let got = run(&mut u, b"+ \r\n").expect("response");
            let [Send(line)] = got.as_slice() else {
                panic!("{kb} KB: {got:?}");
            };
            assert!(line.len() > kb * 1024 && line.ends_with(b"\r\n"));
            // Second `+`: the error challenge, answered with the dummy response.
            let dummy = match mech {
                OAuthMechanism::XOAuth2 => "\r\n",
                OAuthMechanism::OAuthBearer => "AQ==\r\n",
            };
            assert_eq!(
                run(&mut u, b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
                Ok(vec![send(dummy)]),
                "{kb} KB"
            );
            assert_eq!(
                run(&mut u, b"-ERR [AUTH] Invalid token\r\n"),
                Ok(vec![verdict(false, "-ERR [AUTH] Invalid token")]),
                "{kb} KB"
            );
        }
    }
}

#[test]
fn temporary_refusals_carry_their_scope() {
    use mailgate_proto::TempScope;
    for (line, scope) in [
        (
            "-ERR [SYS/TEMP] Temporary internal failure",
            Some(TempScope::Backend),
        ),
        (
            "-ERR [IN-USE] Mailbox locked by another session",
            Some(TempScope::Mailbox),
        ),
        ("-ERR [LOGIN-DELAY] wait", Some(TempScope::Mailbox)),
        ("-ERR [AUTH] Authentication failed.", None),
        ("-ERR Authentication failed.", None),
    ] {
        let mut u = Pop3Upstream::new(cfg(false, false), pw(None, "u", "p"));
        run(&mut u, DOVECOT_CAPA_WITH_GREETING).expect("capa");
        run(&mut u, b"+OK\r\n").expect("user");
        let got = run(&mut u, format!("{line}\r\n").as_bytes()).expect("verdict");
        let reply = BackendReply {
            untagged: vec![],
            status: line.as_bytes().to_vec(),
        };
        let want = match scope {
            Some(scope) => Done(LoginVerdict::Temporary(reply, scope)),
            None => Done(LoginVerdict::Rejected(reply)),
        };
        assert_eq!(got, vec![want], "{line}");
    }
}

const DOVECOT_CAPA_WITH_GREETING: &[u8] = b"+OK Dovecot ready.\r\n+OK\r\nCAPA\r\nUSER\r\n\
SASL PLAIN LOGIN\r\n.\r\n";

#[test]
fn stls_then_capa_again() {
    let mut u = Pop3Upstream::new(cfg(true, false), pw(None, "u", "p"));
    assert_eq!(
        run(&mut u, b"+OK hi\r\n+OK\r\nSTLS\r\n.\r\n"),
        Ok(vec![send("CAPA\r\n"), send("STLS\r\n")])
    );
    assert_eq!(run(&mut u, b"+OK Begin TLS\r\n"), Ok(vec![StartTls]));
    u.tls_started();
    assert_eq!(run(&mut u, b""), Ok(vec![send("CAPA\r\n")]));
    assert_eq!(
        run(&mut u, DOVECOT_CAPA),
        Ok(vec![
            CredentialsNext,
            send("USER u\r\n"),
            send("PASS p\r\n")
        ])
    );
}

#[test]
fn stls_refused_or_injected() {
    let mut u = Pop3Upstream::new(cfg(true, false), pw(None, "u", "p"));
    assert_eq!(
        run(&mut u, b"+OK hi\r\n+OK\r\nUSER\r\n.\r\n"),
        Err(UpstreamError::StartTlsRefused)
    );
    let mut u = Pop3Upstream::new(cfg(true, false), pw(None, "u", "p"));
    run(&mut u, b"+OK hi\r\n+OK\r\nSTLS\r\n.\r\n").ok();
    assert_eq!(
        run(&mut u, b"-ERR no\r\n"),
        Err(UpstreamError::StartTlsRefused)
    );
    let mut u = Pop3Upstream::new(cfg(true, false), pw(None, "u", "p"));
    run(&mut u, b"+OK hi\r\n+OK\r\nSTLS\r\n.\r\n").ok();
    assert_eq!(
        run(&mut u, b"+OK go\r\n+OK Logged in.\r\n"),
        Err(UpstreamError::StartTlsInjection)
    );
}

/// Everything XCLIENT carries is mailgate's own knowledge of the session, in the order
/// Dovecot's own proxy sends it; the TTL is Dovecot's default less mailgate's hop.
const XCLIENT: &str = "XCLIENT ADDR=2001:db8::44 PORT=50123 DESTADDR=192.0.2.1 DESTPORT=110 SESSION=s1 TTL=4 CLIENT-TRANSPORT=insecure\r\n";

#[test]
fn xclient_from_greeting_code() {
    let mut u = Pop3Upstream::new(cfg(false, true), pw(None, "u", "p"));
    run(&mut u, b"+OK [XCLIENT] Dovecot (Debian) ready.\r\n").ok();
    // PIPELINING: the login goes along with XCLIENT.
    assert_eq!(
        run(&mut u, DOVECOT_CAPA),
        Ok(vec![
            send(XCLIENT),
            CredentialsNext,
            send("USER u\r\n"),
            send("PASS p\r\n")
        ])
    );
    assert_eq!(run(&mut u, b"+OK Updated\r\n"), Ok(vec![]));
    assert!(u.forwarded());
    // Not offered: no XCLIENT.
    let mut u = Pop3Upstream::new(cfg(false, true), pw(None, "u", "p"));
    let got = run(&mut u, b"+OK Dovecot ready.\r\n").and_then(|_| run(&mut u, DOVECOT_CAPA));
    assert_eq!(
        got,
        Ok(vec![
            CredentialsNext,
            send("USER u\r\n"),
            send("PASS p\r\n")
        ])
    );
    // Refused XCLIENT: login goes on.
    let mut u = Pop3Upstream::new(cfg(false, true), pw(None, "u", "p"));
    let got = run(
        &mut u,
        b"+OK [XCLIENT] hi\r\n-ERR\r\n-ERR Invalid parameters\r\n",
    );
    assert_eq!(
        got,
        Ok(vec![
            send("CAPA\r\n"),
            send(XCLIENT),
            CredentialsNext,
            send("USER u\r\n")
        ])
    );
    assert!(!u.forwarded());
}

fn forward(ip: &str, dest: &str, session: &str, tls: bool) -> ForwardInfo {
    ForwardInfo {
        client: ClientAddr {
            ip: ip.into(),
            port: 1,
        },
        connected: ClientAddr {
            ip: dest.into(),
            port: 995,
        },
        session_id: session.into(),
        client_tls: tls,
        proxy_ttl: mailgate_proto::login::PROXY_TTL,
        client_id: vec![],
    }
}

/// The XCLIENT line for `forward` (after a greeting that offers it), if one is sent.
fn xclient_line(forward: ForwardInfo) -> Option<String> {
    let config = UpstreamConfig {
        limits: Limits::default(),
        starttls: false,
        forward: Some(forward),
    };
    let mut u = Pop3Upstream::new(config, pw(None, "u", "p"));
    run(&mut u, b"+OK [XCLIENT] hi\r\n").ok();
    match run(&mut u, DOVECOT_CAPA).ok()?.first()? {
        Send(b) if b.starts_with(b"XCLIENT ") => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

#[test]
fn xclient_tells_the_client_transport_and_leaves_out_what_could_inject() {
    assert_eq!(
        xclient_line(forward("192.0.2.9", "192.0.2.1", "mg-1f", true)).as_deref(),
        Some(
            "XCLIENT ADDR=192.0.2.9 PORT=1 DESTADDR=192.0.2.1 DESTPORT=995 SESSION=mg-1f TTL=4 \
             CLIENT-TRANSPORT=TLS\r\n"
        )
    );
    // A session id or connected address with a space would add a field: left out.
    assert_eq!(
        xclient_line(forward("192.0.2.9", "1.2.3.4 TTL=9", "a TTL=99", false)).as_deref(),
        Some("XCLIENT ADDR=192.0.2.9 PORT=1 TTL=4 CLIENT-TRANSPORT=insecure\r\n")
    );
    // A client address that is not an address: no XCLIENT at all.
    assert_eq!(
        xclient_line(forward("1.2.3.4 TTL=9", "192.0.2.1", "s", false)),
        None
    );
}

#[test]
fn hostile_backends() {
    let mut u = Pop3Upstream::new(cfg(false, false), pw(None, "u", "p"));
    assert_eq!(
        run(&mut u, b"-ERR [SYS/TEMP] busy\r\n"),
        Err(UpstreamError::GreetingRefused)
    );
    let mut u = Pop3Upstream::new(cfg(false, false), pw(None, "u", "p"));
    assert_eq!(run(&mut u, b"* OK IMAP\r\n"), Err(UpstreamError::Malformed));
    let mut u = Pop3Upstream::new(cfg(false, false), pw(None, "u", "p"));
    let mut capa = b"+OK\r\n+OK\r\n".to_vec();
    for _ in 0..65 {
        capa.extend_from_slice(b"X\r\n");
    }
    assert_eq!(run(&mut u, &capa), Err(UpstreamError::TooManyLines));
    let mut u = Pop3Upstream::new(cfg(false, false), pw(None, "u", "p"));
    assert_eq!(
        run(&mut u, &vec![b'+'; 70_000]),
        Err(UpstreamError::LineTooLong)
    );
    let mut u = Pop3Upstream::new(cfg(false, false), pw(None, "u", "p"));
    for _ in 0..10 {
        u.feed(&[b'+'; 8192]);
    }
    assert_eq!(u.next_action(), Err(UpstreamError::LineTooLong));
}

#[test]
fn debug_never_shows_credentials() {
    let mut u = Pop3Upstream::new(cfg(false, false), pw(None, "u", "hunter2"));
    u.feed(b"+OK\r\n-ERR\r\n+OK\r\n");
    let _ = u.next_action();
    let _ = u.next_action();
    let _ = u.next_action();
    assert!(!format!("{u:?}").contains("hunter2"));
}
