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
        client_tls: true,
        proxy_ttl: mailgate_proto::login::PROXY_TTL,
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
            "S:mg3 ID (\"x-originating-ip\" \"2001:db8::1\" \"x-originating-port\" \"50000\" \"x-connected-ip\" \"192.0.2.2\" \"x-connected-port\" \"993\" \"x-session-id\" \"abc\" \"x-proxy-ttl\" \"4\" \"x-client-transport\" \"TLS\" \"name\" \"mutt\")\r\n",
            // Pipelined behind ID, after STARTTLS and the capabilities read over TLS.
            "CRED",
            "S:mg4 AUTHENTICATE PLAIN c2hhcmVkQGV4YW1wbGUuY29tAGFkbWluAHB3\r\n"
        ]
    );
    let none: [&str; 0] = [];
    assert_eq!(
        run(
            &mut up,
            b"* ID (\"name\" \"Dovecot\")\r\nmg3 OK ID completed.\r\n"
        ),
        none
    );
    assert_eq!(
        run(&mut up, b"mg4 OK Logged in\r\n"),
        ["DONE:OK:|OK Logged in"]
    );
}

/// The ID mailgate sends for `forward` to a backend that offers ID.
fn id_line(forward: ForwardInfo) -> String {
    let mut up = ImapUpstream::new(config(false, Some(forward)), password(None, "u", b"p"));
    let got = run(&mut up, b"* OK [CAPABILITY IMAP4rev1 ID] hi\r\n");
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[1..], ["CRED", "S:mg2 LOGIN \"u\" \"p\"\r\n"]);
    got[0].clone()
}

fn forward(client_tls: bool, client_id: &[(&str, Option<&str>)]) -> ForwardInfo {
    ForwardInfo {
        client: ClientAddr {
            ip: "198.51.100.7".into(),
            port: 40001,
        },
        connected: ClientAddr {
            ip: "127.0.0.1".into(),
            port: 143,
        },
        session_id: "mg-2a".into(),
        client_tls,
        proxy_ttl: mailgate_proto::login::PROXY_TTL,
        client_id: client_id
            .iter()
            .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
            .collect(),
    }
}

const OURS_PLAIN: &str = "\"x-originating-ip\" \"198.51.100.7\" \"x-originating-port\" \"40001\" \
    \"x-connected-ip\" \"127.0.0.1\" \"x-connected-port\" \"143\" \"x-session-id\" \"mg-2a\" \
    \"x-proxy-ttl\" \"4\" \"x-client-transport\" \"insecure\"";

#[test]
fn id_forwards_the_rfc2971_fields_and_none_of_the_clients_x_fields() {
    // The forgery: none of it reaches the backend, mailgate's own values do.
    let forged = [
        ("x-forward-foo", Some("1")),
        ("x-client-transport", Some("TLS")),
        ("x-proxy-ttl", Some("0")),
        ("X-Originating-IP", Some("10.9.9.9")),
        ("x-connected-port", Some("1")),
        ("x-session-ext-id", Some("forged")),
        ("x-forward-", Some("empty-suffix")),
    ];
    assert_eq!(
        id_line(forward(false, &forged)),
        format!("S:mg1 ID ({OURS_PLAIN})\r\n")
    );
    // Every RFC 2971 name passes (any case, sent lower-case), each once; others do not.
    let rfc: Vec<(&str, Option<&str>)> = vec![
        ("NAME", Some("Thunderbird")),
        ("version", Some("128.0")),
        ("os", Some("Linux")),
        ("os-version", Some("6.1")),
        ("vendor", Some("Mozilla")),
        ("support-url", Some("https://support.example/")),
        ("address", None),
        ("date", Some("1-Jan-2026")),
        ("command", Some("thunderbird")),
        ("arguments", Some("-P")),
        ("environment", Some("desktop")),
        ("name", Some("second name")),
        ("guid", Some("not RFC 2971")),
        ("x-forward-foo", Some("1")),
    ];
    assert_eq!(
        id_line(forward(false, &rfc)),
        format!(
            "S:mg1 ID ({OURS_PLAIN} \"name\" \"Thunderbird\" \"version\" \"128.0\" \"os\" \"Linux\" \
             \"os-version\" \"6.1\" \"vendor\" \"Mozilla\" \"support-url\" \"https://support.example/\" \
             \"address\" NIL \"date\" \"1-Jan-2026\" \"command\" \"thunderbird\" \"arguments\" \"-P\" \
             \"environment\" \"desktop\")\r\n"
        )
    );
}

#[test]
fn id_tells_the_client_transport_truthfully() {
    assert!(id_line(forward(false, &[])).contains("\"x-client-transport\" \"insecure\""));
    let tls = id_line(forward(true, &[("x-client-transport", Some("insecure"))]));
    assert!(tls.contains("\"x-client-transport\" \"TLS\")"), "{tls}");
    assert_eq!(tls.matches("x-client-transport").count(), 1, "{tls}");
}

#[test]
fn id_values_that_cannot_be_quoted_or_are_too_long_are_dropped() {
    let long = "v".repeat(1025);
    let line = id_line(forward(
        false,
        &[
            ("name", Some("bad\"quote\r\nx-forward-a \"1")),
            ("version", Some(&long)),
            ("os", Some(&long[..1024])),
        ],
    ));
    assert!(!line.contains("x-forward-a"), "{line}");
    assert!(!line.contains("\"name\""), "{line}");
    assert!(!line.contains("\"version\""), "{line}");
    assert!(
        line.contains(&format!("\"os\" \"{}\"", &long[..1024])),
        "{line}"
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
