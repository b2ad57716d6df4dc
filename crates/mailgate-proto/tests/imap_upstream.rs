//! Known-answer tests for the IMAP login relay towards a backend: greetings, capability
//! discovery, STARTTLS, ID forwarding, the re-serialized login and the verdicts.

use mailgate_proto::UpstreamConfig;
use mailgate_proto::action::BackendReply;
use mailgate_proto::imap::ImapUpstream;
use mailgate_proto::{
    ClientAddr, Credentials, ForwardInfo, Limits, LoginRequest, LoginVerdict, OAuthMechanism,
    Secret, UpstreamAction, UpstreamError,
};

fn config(starttls: bool, forward: Option<ForwardInfo>) -> UpstreamConfig {
    UpstreamConfig {
        limits: Limits::default(),
        starttls,
        forward,
    }
}

fn password(authzid: Option<&str>, user: &str, pw: &[u8]) -> LoginRequest {
    LoginRequest {
        credentials: Credentials::Password {
            authzid: authzid.map(str::to_string),
            authcid: user.into(),
            password: Secret::new(pw),
        },
    }
}

/// Feed `input`, render actions (`S:`, `TLS`, `CRED`, `DONE:OK:<status>` ...) until more
/// bytes are needed; an error ends the list with `ERR:<variant>`.
fn run(up: &mut ImapUpstream, input: &[u8]) -> Vec<String> {
    up.feed(input);
    let mut out = Vec::new();
    loop {
        match up.next_action() {
            Ok(None) => return out,
            Ok(Some(a)) => out.push(match a {
                UpstreamAction::Send(b) => format!("S:{}", String::from_utf8_lossy(&b)),
                UpstreamAction::StartTls => "TLS".into(),
                UpstreamAction::CredentialsNext => "CRED".into(),
                UpstreamAction::Done(LoginVerdict::Accepted(r)) => done("OK", &r),
                UpstreamAction::Done(LoginVerdict::Rejected(r)) => done("NO", &r),
                UpstreamAction::Done(LoginVerdict::Temporary(r, scope)) => {
                    done(&format!("TEMP({scope:?})"), &r)
                }
                UpstreamAction::Done(other) => format!("DONE:{other:?}"),
            }),
            Err(e) => {
                out.push(format!("ERR:{e:?}"));
                return out;
            }
        }
    }
}

fn done(kind: &str, r: &BackendReply) -> String {
    format!(
        "DONE:{kind}:{}|{}",
        String::from_utf8_lossy(&r.untagged),
        String::from_utf8_lossy(&r.status)
    )
}

#[test]
fn plain_login_with_caps_in_greeting() {
    let mut up = ImapUpstream::new(config(false, None), password(None, "alice", b"p\"w"));
    assert_eq!(
        run(
            &mut up,
            b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Dovecot ready.\r\n"
        ),
        ["CRED", "S:mg1 LOGIN \"alice\" \"p\\\"w\"\r\n"]
    );
    assert_eq!(
        run(
            &mut up,
            b"* CAPABILITY IMAP4rev1 IDLE\r\nmg1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n* 3 EXISTS\r\n"
        ),
        ["DONE:OK:* CAPABILITY IMAP4rev1 IDLE\r\n|OK [CAPABILITY IMAP4rev1 IDLE] Logged in"]
    );
    assert_eq!(up.into_remaining(), b"* 3 EXISTS\r\n");
}

#[test]
fn capability_asked_when_greeting_has_none_and_literal_password() {
    let mut up = ImapUpstream::new(config(false, None), password(None, "bob", "pä".as_bytes()));
    assert_eq!(run(&mut up, b"* OK ready\r\n"), ["S:mg1 CAPABILITY\r\n"]);
    assert_eq!(
        run(&mut up, b"* CAPABILITY IMAP4rev1\r\nmg1 OK done\r\n"),
        ["CRED", "S:mg2 LOGIN \"bob\" {3}\r\n"]
    );
    assert_eq!(run(&mut up, b"+ go ahead\r\n"), ["S:pä\r\n"]);
    assert_eq!(
        run(
            &mut up,
            b"mg2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        ),
        ["DONE:NO:|NO [AUTHENTICATIONFAILED] Authentication failed."]
    );
}

#[test]
fn starttls_then_id_then_plain_with_authzid() {
    let forward = ForwardInfo {
        client: ClientAddr {
            ip: "2001:db8::1".into(),
            port: 50000,
        },
        connected: ClientAddr {
            ip: "192.0.2.2".into(),
            port: 993,
        },
        session_id: "abc".into(),
        client_id: vec![
            ("name".into(), Some("mutt".into())),
            ("x-session-id".into(), Some("spoof".into())),
        ],
    };
    let mut up = ImapUpstream::new(
        config(true, Some(forward)),
        password(Some("shared@example.com"), "admin", b"pw"),
    );
    assert_eq!(
        run(&mut up, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"),
        ["S:mg1 STARTTLS\r\n"]
    );
    assert_eq!(run(&mut up, b"mg1 OK Begin TLS\r\n"), ["TLS"]);
    up.tls_started();
    assert_eq!(run(&mut up, b""), ["S:mg2 CAPABILITY\r\n"]);
    assert_eq!(
        run(
            &mut up,
            b"* CAPABILITY IMAP4rev1 ID SASL-IR AUTH=PLAIN\r\nmg2 OK\r\n"
        ),
        [
            "S:mg3 ID (\"x-originating-ip\" \"2001:db8::1\" \"x-originating-port\" \"50000\" \"x-connected-ip\" \"192.0.2.2\" \"x-connected-port\" \"993\" \"x-session-id\" \"abc\" \"name\" \"mutt\")\r\n"
        ]
    );
    assert_eq!(
        run(
            &mut up,
            b"* ID (\"name\" \"Dovecot\")\r\nmg3 OK ID completed.\r\n"
        ),
        [
            "CRED",
            "S:mg4 AUTHENTICATE PLAIN c2hhcmVkQGV4YW1wbGUuY29tAGFkbWluAHB3\r\n"
        ]
    );
    assert_eq!(
        run(&mut up, b"mg4 OK Logged in\r\n"),
        ["DONE:OK:|OK Logged in"]
    );
}

#[test]
fn plain_without_sasl_ir_waits_for_continuation() {
    let mut up = ImapUpstream::new(config(false, None), password(Some("z"), "u", b"p"));
    assert_eq!(
        run(&mut up, b"* OK [CAPABILITY IMAP4rev1] hi\r\n"),
        ["CRED", "S:mg1 AUTHENTICATE PLAIN\r\n"]
    );
    assert_eq!(run(&mut up, b"+ \r\n"), ["S:egB1AHA=\r\n"]);
    // BAD to the login is the backend refusing what the client supplied: refused
    // credentials, never the backend's fault.
    assert_eq!(run(&mut up, b"mg1 BAD no\r\n"), ["DONE:NO:|BAD no"]);
}

#[test]
fn temporary_refusals_are_told_apart_from_wrong_passwords() {
    for (line, want) in [
        (
            &b"mg1 NO [UNAVAILABLE] Internal error occurred.\r\n"[..],
            "DONE:TEMP(Backend):|NO [UNAVAILABLE] Internal error occurred.",
        ),
        (
            b"mg1 NO [SERVERBUG] x\r\n",
            "DONE:TEMP(Backend):|NO [SERVERBUG] x",
        ),
        (
            b"mg1 NO [INUSE] locked\r\n",
            "DONE:TEMP(Mailbox):|NO [INUSE] locked",
        ),
        (
            b"mg1 NO [LIMIT] too many\r\n",
            "DONE:TEMP(Mailbox):|NO [LIMIT] too many",
        ),
        (
            b"mg1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
            "DONE:NO:|NO [AUTHENTICATIONFAILED] Authentication failed.",
        ),
        (b"mg1 NO Login failed\r\n", "DONE:NO:|NO Login failed"),
    ] {
        let mut up = ImapUpstream::new(config(false, None), password(None, "u", b"p"));
        assert_eq!(
            run(&mut up, b"* OK [CAPABILITY IMAP4rev1] hi\r\n"),
            ["CRED", "S:mg1 LOGIN \"u\" \"p\"\r\n"]
        );
        assert_eq!(run(&mut up, line), [want]);
    }
    // A BYE instead of a verdict is the backend's trouble.
    let mut up = ImapUpstream::new(config(false, None), password(None, "u", b"p"));
    run(&mut up, b"* OK [CAPABILITY IMAP4rev1] hi\r\n");
    assert_eq!(run(&mut up, b"* BYE Internal error\r\n"), ["ERR:Bye"]);
    // Something that is not a verdict at all is garbage.
    let mut up = ImapUpstream::new(config(false, None), password(None, "u", b"p"));
    run(&mut up, b"* OK [CAPABILITY IMAP4rev1] hi\r\n");
    assert_eq!(run(&mut up, b"mg1 WHATEVER zz\r\n"), ["ERR:Malformed"]);
}

#[test]
fn oauth_error_challenge_gets_empty_response() {
    let login = LoginRequest {
        credentials: Credentials::OAuth {
            mechanism: OAuthMechanism::OAuthBearer,
            user: "a@b".into(),
            initial_response: Secret::new("n,a=a@b,\x01auth=Bearer t\x01\x01"),
        },
    };
    let mut up = ImapUpstream::new(config(false, None), login);
    let out = run(&mut up, b"* OK [CAPABILITY IMAP4rev1 SASL-IR] hi\r\n");
    assert_eq!(out[0], "CRED");
    assert!(out[1].starts_with("S:mg1 AUTHENTICATE OAUTHBEARER bixhPWFAYiwB"));
    assert_eq!(
        run(&mut up, b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
        ["S:AQ==\r\n"]
    );
    assert_eq!(run(&mut up, b"mg1 NO denied\r\n"), ["DONE:NO:|NO denied"]);
}

#[test]
fn greeting_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"* PREAUTH hi\r\n", "ERR:Preauth"),
        (b"* BYE too busy\r\n", "ERR:GreetingRefused"),
        (b"HTTP/1.1 400\r\n", "ERR:Malformed"),
        (b"+ hi\r\n", "ERR:Malformed"),
    ];
    for (input, want) in cases {
        let mut up = ImapUpstream::new(config(false, None), password(None, "u", b"p"));
        assert_eq!(run(&mut up, input), [*want], "{input:?}");
    }
}

#[test]
fn starttls_failures() {
    let mut up = ImapUpstream::new(config(true, None), password(None, "u", b"p"));
    assert_eq!(
        run(&mut up, b"* OK [CAPABILITY IMAP4rev1] hi\r\n"),
        ["ERR:StartTlsRefused"]
    );
    let mut up = ImapUpstream::new(config(true, None), password(None, "u", b"p"));
    run(&mut up, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n");
    assert_eq!(run(&mut up, b"mg1 NO not now\r\n"), ["ERR:StartTlsRefused"]);
    let mut up = ImapUpstream::new(config(true, None), password(None, "u", b"p"));
    run(&mut up, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n");
    assert_eq!(
        run(&mut up, b"mg1 OK go\r\n* OK injected\r\n"),
        ["ERR:StartTlsInjection"]
    );
    let mut up = ImapUpstream::new(config(true, None), password(None, "u", b"p"));
    run(&mut up, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n");
    assert_eq!(run(&mut up, b"mg1 OK go\r\n"), ["TLS"]);
    assert_eq!(run(&mut up, b"x"), ["ERR:StartTlsInjection"]);
}

#[test]
fn hostile_backends_hit_limits() {
    let mut up = ImapUpstream::new(config(false, None), password(None, "u", b"p"));
    run(&mut up, b"* OK [CAPABILITY IMAP4rev1] hi\r\n");
    assert_eq!(run(&mut up, &vec![b'x'; 70_000]), ["ERR:LineTooLong"]);
    let mut up = ImapUpstream::new(config(false, None), password(None, "u", b"p"));
    run(&mut up, b"* OK [CAPABILITY IMAP4rev1] hi\r\n");
    assert_eq!(
        run(&mut up, &b"* OK x\r\n".repeat(65)),
        ["ERR:TooManyLines"]
    );
    let mut up = ImapUpstream::new(config(false, None), password(None, "u", b"p"));
    run(&mut up, b"* OK [CAPABILITY IMAP4rev1] hi\r\n");
    assert_eq!(run(&mut up, b"* BYE shutting down\r\n"), ["ERR:Bye"]);
    let mut up = ImapUpstream::new(config(false, None), password(None, "u", b"p"));
    run(&mut up, b"* OK [CAPABILITY IMAP4rev1] hi\r\n");
    assert_eq!(run(&mut up, b"zz9 OK\r\n"), ["ERR:Malformed"]);
    let mut up = ImapUpstream::new(config(false, None), password(None, "u", b"p"));
    run(&mut up, b"* OK [CAPABILITY IMAP4rev1] hi\r\n");
    assert_eq!(run(&mut up, b"+ more?\r\n"), ["ERR:Malformed"]);
}

#[test]
fn errors_never_carry_input() {
    let e = UpstreamError::Malformed;
    assert!(!format!("{e} {e:?}").contains("zz9"));
}
