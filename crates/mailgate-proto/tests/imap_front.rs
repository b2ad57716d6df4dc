//! Known-answer tests for the client-facing IMAP engine: every pre-auth command form,
//! the limits, STARTTLS injection and capabilities before and after TLS.

use mailgate_proto::FrontConfig;
use mailgate_proto::action::BackendReply;
use mailgate_proto::imap::ImapFront;
use mailgate_proto::{CloseReason, Credentials, FrontAction, LoginVerdict, OAuthMechanism};

fn plain_config() -> FrontConfig {
    FrontConfig {
        require_tls_for_login: false,
        ..FrontConfig::default()
    }
}

/// Feed `input` and render every action as text: `S:<bytes>`, `TLS`, `LOGIN:<user>`,
/// `CLOSE:<reason>`.
fn run(front: &mut ImapFront, input: &[u8]) -> Vec<String> {
    front.feed(input);
    drain(front)
}

fn drain(front: &mut ImapFront) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(a) = front.next_action() {
        out.push(render(&a));
    }
    out
}

fn render(a: &FrontAction) -> String {
    match a {
        FrontAction::Send(b) => format!("S:{}", String::from_utf8_lossy(b)),
        FrontAction::StartTls => "TLS".into(),
        FrontAction::Login(req) => format!("LOGIN:{}", req.routing_user()),
        FrontAction::Close(r) => format!("CLOSE:{r}"),
    }
}

fn login_of(front: &mut ImapFront, input: &[u8]) -> Credentials {
    front.feed(input);
    loop {
        match front.next_action() {
            Some(FrontAction::Login(req)) => return req.credentials,
            Some(_) => {}
            None => panic!("no login"),
        }
    }
}

fn password(c: &Credentials) -> (&Option<String>, &str, &[u8]) {
    match c {
        Credentials::Password {
            authzid,
            authcid,
            password,
        } => (authzid, authcid, password.expose()),
        other => panic!("not a password: {other:?}"),
    }
}

#[test]
fn greeting_and_caps_before_and_after_tls() {
    let mut f = ImapFront::new(FrontConfig::default(), false);
    assert_eq!(
        f.greeting(),
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID STARTTLS LOGINDISABLED] mailgate ready.\r\n"
    );
    assert_eq!(
        run(&mut f, b"a CAPABILITY\r\n"),
        [
            "S:* CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID STARTTLS LOGINDISABLED\r\na OK CAPABILITY completed.\r\n"
        ]
    );
    assert_eq!(
        run(&mut f, b"b LOGIN u p\r\nc AUTHENTICATE PLAIN\r\n"),
        [
            "S:b NO [PRIVACYREQUIRED] Login requires TLS; use STARTTLS.\r\n",
            "S:c NO [PRIVACYREQUIRED] Login requires TLS; use STARTTLS.\r\n"
        ]
    );
    assert_eq!(
        run(&mut f, b"d STARTTLS\r\n"),
        ["S:d OK Begin TLS negotiation now.\r\n", "TLS"]
    );
    f.tls_started();
    assert_eq!(
        run(&mut f, b"e CAPABILITY\r\n"),
        [
            "S:* CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN AUTH=LOGIN\r\ne OK CAPABILITY completed.\r\n"
        ]
    );
    assert_eq!(
        run(&mut f, b"f STARTTLS\r\n"),
        ["S:f BAD STARTTLS not available.\r\n"]
    );
    let oauth = ImapFront::new(
        FrontConfig {
            oauth: true,
            ..FrontConfig::default()
        },
        true,
    );
    assert_eq!(
        oauth.capabilities(),
        "IMAP4rev1 SASL-IR LITERAL- ID AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2 AUTH=OAUTHBEARER"
    );
}

#[test]
fn starttls_injection_closes() {
    let mut f = ImapFront::new(FrontConfig::default(), false);
    assert_eq!(
        run(&mut f, b"a STARTTLS\r\nb LOGIN u p\r\n"),
        [
            "S:a OK Begin TLS negotiation now.\r\n",
            "CLOSE:starttls_injection"
        ]
    );
    let mut f = ImapFront::new(FrontConfig::default(), false);
    assert_eq!(
        run(&mut f, b"a STARTTLS\r\n"),
        ["S:a OK Begin TLS negotiation now.\r\n", "TLS"]
    );
    assert_eq!(run(&mut f, b"x"), ["CLOSE:starttls_injection"]);
}

#[test]
fn noop_logout_id() {
    let mut f = ImapFront::new(plain_config(), false);
    assert_eq!(
        run(
            &mut f,
            b"a NOOP\r\nb ID (\"name\" \"Thunderbird\" \"os\" NIL)\r\nc logout\r\nd NOOP\r\n"
        ),
        [
            "S:a OK NOOP completed.\r\n",
            "S:* ID (\"name\" \"mailgate\")\r\nb OK ID completed.\r\n",
            "S:* BYE Logging out.\r\nc OK LOGOUT completed.\r\n",
            "CLOSE:client_logout"
        ]
    );
    assert_eq!(
        f.client_id(),
        [
            ("name".to_string(), Some("Thunderbird".to_string())),
            ("os".to_string(), None)
        ]
    );
}

#[test]
fn login_forms() {
    let cases: &[(&[u8], &str, &[u8])] = &[
        (b"a LOGIN alice secret\r\n", "alice", b"secret"),
        (
            b"a LOGIN \"al ice\" \"p\\\"w\\\\d\"\r\n",
            "al ice",
            b"p\"w\\d",
        ),
        (
            b"a login alice@example.com \"\"\r\n",
            "alice@example.com",
            b"",
        ),
        (
            b"a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n",
            "alice",
            b"secret",
        ),
        (
            b"a LOGIN alice \"p\xc3\xa4ss\"\r\n",
            "alice",
            "päss".as_bytes(),
        ),
        (b"a LOGIN al]ce pw\r\n", "al]ce", b"pw"),
    ];
    for (input, user, pw) in cases {
        let mut f = ImapFront::new(plain_config(), false);
        let c = login_of(&mut f, input);
        let (z, u, p) = password(&c);
        assert_eq!((z.as_deref(), u, p), (None, *user, *pw), "{input:?}");
    }
}

#[test]
fn synchronizing_literal_login_with_command_like_content() {
    let mut f = ImapFront::new(plain_config(), false);
    assert_eq!(
        run(&mut f, b"a LOGIN {5}\r\n"),
        ["S:+ Ready for literal data\r\n"]
    );
    assert_eq!(
        run(&mut f, b"alice {11}\r\n"),
        ["S:+ Ready for literal data\r\n"]
    );
    // The literal holds what looks like a command; it stays data.
    let c = login_of(&mut f, b"b LOGOUT\r\nx\r\n");
    assert_eq!(password(&c).2, b"b LOGOUT\r\nx");
}

#[test]
fn pipelined_commands_in_one_read() {
    let mut f = ImapFront::new(plain_config(), false);
    assert_eq!(
        run(
            &mut f,
            b"1 NOOP\r\n2 CAPABILITY\r\n3 LOGIN bob pw\r\n4 SELECT INBOX\r\n"
        ),
        [
            "S:1 OK NOOP completed.\r\n",
            "S:* CAPABILITY IMAP4rev1 SASL-IR LITERAL- ID STARTTLS AUTH=PLAIN AUTH=LOGIN\r\n2 OK CAPABILITY completed.\r\n",
            "LOGIN:bob"
        ]
    );
    // Pipelined bytes wait while the login is in flight.
    f.feed(b"5 NOOP\r\n");
    assert_eq!(f.next_action(), None);
    let reply = BackendReply {
        untagged: b"* CAPABILITY IMAP4rev1 IDLE\r\n".to_vec(),
        status: b"OK [CAPABILITY IMAP4rev1 IDLE] Logged in".to_vec(),
    };
    assert_eq!(
        f.login_result(LoginVerdict::Accepted(reply)),
        b"* CAPABILITY IMAP4rev1 IDLE\r\n3 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n"
    );
    assert!(f.is_finished());
    assert_eq!(f.next_action(), None);
    assert_eq!(f.into_remaining(), b"4 SELECT INBOX\r\n5 NOOP\r\n");
}

#[test]
fn login_verdicts() {
    let mut f = ImapFront::new(plain_config(), false);
    assert_eq!(run(&mut f, b"a LOGIN u p\r\n"), ["LOGIN:u"]);
    assert_eq!(
        f.login_result(LoginVerdict::AuthFailed),
        b"a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    assert_eq!(run(&mut f, b"b LOGIN u p\r\n"), ["LOGIN:u"]);
    assert_eq!(
        f.login_result(LoginVerdict::Unavailable("down\r\n* OK see status".into())),
        b"b NO [UNAVAILABLE] down  * OK see status\r\n"
    );
    assert_eq!(run(&mut f, b"c LOGIN u p\r\n"), ["LOGIN:u"]);
    let no = BackendReply {
        untagged: Vec::new(),
        status: b"NO [AUTHENTICATIONFAILED] Authentication failed.".to_vec(),
    };
    assert_eq!(
        f.login_result(LoginVerdict::Rejected(no)),
        b"c NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    assert!(!f.is_finished());
    assert_eq!(run(&mut f, b"d NOOP\r\n"), ["S:d OK NOOP completed.\r\n"]);
    assert_eq!(
        f.shutdown_bye(),
        b"* BYE [UNAVAILABLE] Server shutting down.\r\n"
    );
    assert!(f.timeout_bye().starts_with(b"* BYE "));
}

#[test]
fn refused_logins_count_as_bad_commands() {
    let mut f = ImapFront::new(plain_config(), false);
    for tag in ["a", "b"] {
        assert_eq!(
            run(&mut f, format!("{tag} LOGIN u p\r\n").as_bytes()),
            ["LOGIN:u"]
        );
        f.login_result(LoginVerdict::AuthFailed);
        assert_eq!(drain(&mut f), Vec::<String>::new());
    }
    assert_eq!(run(&mut f, b"c LOGIN u p\r\n"), ["LOGIN:u"]);
    assert_eq!(
        f.login_result(LoginVerdict::AuthFailed),
        b"c NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    assert_eq!(
        drain(&mut f),
        [
            "S:* BYE Too many invalid commands.\r\n",
            "CLOSE:too_many_bad_commands"
        ]
    );
}

#[test]
fn authenticate_plain_forms() {
    // SASL-IR, with an authorization identity: routes on the authzid.
    let mut f = ImapFront::new(plain_config(), false);
    let c = login_of(&mut f, b"a AUTHENTICATE PLAIN Ym9iAGFkbWluAHB3\r\n");
    let (z, u, p) = password(&c);
    assert_eq!((z.as_deref(), u, p), (Some("bob"), "admin", &b"pw"[..]));
    let mut f = ImapFront::new(plain_config(), false);
    assert_eq!(run(&mut f, b"a AUTHENTICATE PLAIN\r\n"), ["S:+ \r\n"]);
    assert_eq!(run(&mut f, b"AGFsaWNlAHB3\r\n"), ["LOGIN:alice"]);
    // `=` is the empty initial response: malformed for PLAIN.
    let mut f = ImapFront::new(plain_config(), false);
    assert_eq!(
        run(
            &mut f,
            b"a AUTHENTICATE PLAIN =\r\nb AUTHENTICATE PLAIN !!\r\n"
        ),
        [
            "S:a BAD Invalid SASL response.\r\n",
            "S:b BAD Invalid base64 data.\r\n"
        ]
    );
    assert_eq!(
        run(
            &mut f,
            b"c AUTHENTICATE CRAM-MD5\r\nd AUTHENTICATE XOAUTH2 eA==\r\n"
        ),
        [
            "S:c NO Unsupported authentication mechanism.\r\n",
            "S:d NO Unsupported authentication mechanism.\r\n"
        ]
    );
}

#[test]
fn authenticate_cancel_then_retry() {
    let mut f = ImapFront::new(plain_config(), false);
    assert_eq!(run(&mut f, b"a AUTHENTICATE PLAIN\r\n"), ["S:+ \r\n"]);
    assert_eq!(
        run(&mut f, b"*\r\n"),
        ["S:a BAD Authentication canceled.\r\n"]
    );
    assert_eq!(
        run(&mut f, b"b AUTHENTICATE LOGIN\r\n"),
        ["S:+ VXNlcm5hbWU6\r\n"]
    );
    assert_eq!(run(&mut f, b"YWxpY2U=\r\n"), ["S:+ UGFzc3dvcmQ6\r\n"]);
    assert_eq!(
        run(&mut f, b"*\r\n"),
        ["S:b BAD Authentication canceled.\r\n"]
    );
    // LOGIN with the user name as SASL-IR.
    assert_eq!(
        run(&mut f, b"c AUTHENTICATE LOGIN YWxpY2U=\r\ncHc=\r\n"),
        ["S:+ UGFzc3dvcmQ6\r\n", "LOGIN:alice"]
    );
}

#[test]
fn authenticate_oauth() {
    let mut f = ImapFront::new(
        FrontConfig {
            oauth: true,
            ..plain_config()
        },
        false,
    );
    // user=alice@example.com^Aauth=Bearer tok^A^A
    let c = login_of(
        &mut f,
        b"a AUTHENTICATE XOAUTH2 dXNlcj1hbGljZUBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB0b2sBAQ==\r\n",
    );
    match c {
        Credentials::OAuth {
            mechanism, user, ..
        } => {
            assert_eq!(mechanism, OAuthMechanism::XOAuth2);
            assert_eq!(user, "alice@example.com");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_commands_close_at_the_limit() {
    let mut f = ImapFront::new(plain_config(), false);
    assert_eq!(
        run(
            &mut f,
            b"a SELECT INBOX\r\n+bad NOOP\r\nb NOOP extra\r\nc NOOP\r\n"
        ),
        [
            "S:a BAD Unknown command or not allowed before login.\r\n",
            "S:* BAD Invalid tag.\r\n",
            "S:b BAD Invalid command syntax.\r\n",
            "S:* BYE Too many invalid commands.\r\n",
            "CLOSE:too_many_bad_commands"
        ]
    );
    assert_eq!(run(&mut f, b"d NOOP\r\n"), Vec::<String>::new());
    // A too long tag and NUL bytes count as bad commands too.
    let mut f = ImapFront::new(plain_config(), false);
    let long_tag = format!("{} NOOP\r\n", "t".repeat(65));
    assert_eq!(
        run(&mut f, long_tag.as_bytes()),
        ["S:* BAD Invalid tag.\r\n"]
    );
    assert_eq!(
        run(&mut f, b"a LOGIN u\0 p\r\n"),
        ["S:a BAD Invalid command syntax.\r\n"]
    );
}

#[test]
fn line_and_literal_limits() {
    let mut f = ImapFront::new(plain_config(), false);
    f.feed(&vec![b'a'; 8 * 1024]);
    assert_eq!(f.next_action(), None);
    assert_eq!(
        run(&mut f, b"a"),
        ["S:* BYE Command line too long.\r\n", "CLOSE:line_too_long"]
    );
    assert_eq!(f.buffered(), 0);

    let mut f = ImapFront::new(plain_config(), false);
    assert_eq!(
        run(
            &mut f,
            b"a LOGIN {4097}\r\nb LOGIN {4294967296}\r\nc NOOP\r\n"
        ),
        [
            "S:a NO [TOOBIG] Literal too large.\r\n",
            "S:b NO [TOOBIG] Literal too large.\r\n",
            "S:c OK NOOP completed.\r\n"
        ]
    );
    let mut f = ImapFront::new(plain_config(), false);
    assert_eq!(
        run(&mut f, b"a LOGIN {99999999999999999999}\r\n"),
        ["S:a NO [TOOBIG] Literal too large.\r\n"]
    );
    let mut f = ImapFront::new(plain_config(), false);
    assert_eq!(
        run(&mut f, b"a LOGIN {4097+}\r\n"),
        [
            "S:* BYE [TOOBIG] Literal too large.\r\n",
            "CLOSE:literal_too_large"
        ]
    );
    let mut f = ImapFront::new(plain_config(), false);
    let c = login_of(
        &mut f,
        &[&b"a LOGIN u {4096+}\r\n"[..], &[b'x'; 4096], b"\r\n"].concat(),
    );
    assert_eq!(password(&c).2.len(), 4096);
}

#[test]
fn pipelining_during_login_is_bounded() {
    let mut f = ImapFront::new(plain_config(), false);
    assert_eq!(run(&mut f, b"a LOGIN u p\r\n"), ["LOGIN:u"]);
    f.feed(&vec![b'x'; 20_000]);
    assert_eq!(
        f.next_action(),
        Some(FrontAction::Close(CloseReason::LineTooLong))
    );
    assert_eq!(f.buffered(), 0);
}

#[test]
fn secrets_are_not_printed() {
    let mut f = ImapFront::new(plain_config(), false);
    f.feed(b"a LOGIN alice hunter2\r\n");
    let action = f.next_action();
    assert!(!format!("{action:?}").contains("hunter2"));
    assert!(!format!("{f:?}").contains("hunter2"));
}

/// Line limits are per command: AUTHENTICATE carries OAuth tokens of 8 KB and more (about
/// 11 KB in base64), ID may be as large as RFC 2971 allows (30 pairs of 30-octet names and
/// 1024-octet values), while LOGIN and the rest keep `max_line`.
#[test]
fn line_limits_are_per_command() {
    use base64::Engine as _;
    let config = || FrontConfig {
        oauth: true,
        ..plain_config()
    };
    let token = "t".repeat(8 * 1024);
    let ir = base64::engine::general_purpose::STANDARD
        .encode(format!("user=a@b.test\u{1}auth=Bearer {token}\u{1}\u{1}"));
    let line = format!("a AUTHENTICATE XOAUTH2 {ir}\r\n");
    assert!(line.len() > 8 * 1024);
    let mut f = ImapFront::new(config(), false);
    assert_eq!(run(&mut f, line.as_bytes()), ["LOGIN:a@b.test"]);
    // The same token as a continuation response.
    let mut f = ImapFront::new(config(), false);
    assert_eq!(run(&mut f, b"a AUTHENTICATE XOAUTH2\r\n"), ["S:+ \r\n"]);
    assert_eq!(
        run(&mut f, format!("{ir}\r\n").as_bytes()),
        ["LOGIN:a@b.test"]
    );

    let pairs: Vec<String> = (0..30)
        .map(|i| {
            format!(
                "\"x-field-{i:02}{}\" \"{}\"",
                "n".repeat(19),
                "v".repeat(1024)
            )
        })
        .collect();
    let id = format!("a ID ({})\r\n", pairs.join(" "));
    assert!(id.len() > 31 * 1024, "{}", id.len());
    let mut f = ImapFront::new(config(), false);
    let out = run(&mut f, id.as_bytes());
    assert!(
        out.last()
            .is_some_and(|l| l.ends_with("a OK ID completed.\r\n")),
        "{out:?}"
    );
    assert_eq!(f.client_id().len(), 30);

    let login = format!("a LOGIN u {}\r\n", "p".repeat(9 * 1024));
    let mut f = ImapFront::new(config(), false);
    assert_eq!(
        run(&mut f, login.as_bytes()),
        ["S:* BYE Command line too long.\r\n", "CLOSE:line_too_long"]
    );
    let mut f = ImapFront::new(config(), false);
    let huge = format!("a AUTHENTICATE XOAUTH2 {}\r\n", "A".repeat(17 * 1024));
    assert_eq!(
        run(&mut f, huge.as_bytes()),
        ["S:* BYE Command line too long.\r\n", "CLOSE:line_too_long"]
    );
}
