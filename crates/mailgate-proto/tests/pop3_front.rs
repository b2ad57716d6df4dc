//! Known-answer tables for the client-facing POP3 engine (issue 2).

use mailgate_proto::FrontConfig;
use mailgate_proto::action::BackendReply;
use mailgate_proto::pop3::Pop3Front;
use mailgate_proto::{CloseReason, Credentials, FrontAction, LoginVerdict, OAuthMechanism, Secret};

use FrontAction::{Close, Send, StartTls};

fn cfg(require_tls: bool, tls_available: bool, oauth: bool) -> FrontConfig {
    FrontConfig {
        require_tls_for_login: require_tls,
        tls_available,
        oauth,
        ..FrontConfig::default()
    }
}

/// An engine on a plaintext listener that allows login without TLS.
fn open() -> Pop3Front {
    Pop3Front::new(cfg(false, true, false), false)
}

fn drain(f: &mut Pop3Front) -> Vec<FrontAction> {
    let mut out = Vec::new();
    while let Some(a) = f.next_action() {
        out.push(a);
    }
    out
}

fn run(f: &mut Pop3Front, input: &[u8]) -> Vec<FrontAction> {
    f.feed(input);
    drain(f)
}

fn send(s: &str) -> FrontAction {
    Send(s.as_bytes().to_vec())
}

fn password(authzid: Option<&str>, user: &str, pw: &str) -> FrontAction {
    FrontAction::Login(mailgate_proto::LoginRequest {
        credentials: Credentials::Password {
            authzid: authzid.map(str::to_string),
            authcid: user.into(),
            password: Secret::new(pw),
        },
    })
}

const CAPA_OPEN: &str = "+OK Capability list follows\r\nUSER\r\nSASL PLAIN LOGIN\r\nSTLS\r\n\
RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION mailgate\r\n.\r\n";

#[test]
fn greeting_has_no_apop_timestamp() {
    let mut c = cfg(true, true, false);
    c.greeting_text = "hi <123.456@host>\r\nX".into();
    let f = Pop3Front::new(c, false);
    assert_eq!(f.greeting(), b"+OK hi (123.456@host)  X\r\n");
    assert_eq!(open().greeting(), b"+OK mailgate ready.\r\n");
}

#[test]
fn capa_depends_on_tls_and_policy() {
    assert_eq!(run(&mut open(), b"CAPA\r\n"), vec![send(CAPA_OPEN)]);
    // TLS required, not active: no USER, no SASL; STLS offered.
    let mut f = Pop3Front::new(cfg(true, true, false), false);
    assert_eq!(
        run(&mut f, b"capa\r\n"),
        vec![send(
            "+OK Capability list follows\r\nSTLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
PIPELINING\r\nIMPLEMENTATION mailgate\r\n.\r\n"
        )]
    );
    // After STLS: USER and SASL, no STLS.
    assert_eq!(
        run(&mut f, b"STLS\r\n"),
        vec![send("+OK Begin TLS negotiation now.\r\n"), StartTls]
    );
    f.tls_started();
    let after = "+OK Capability list follows\r\nUSER\r\nSASL PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n\
RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION mailgate\r\n.\r\n";
    let mut f = Pop3Front::new(cfg(true, true, true), false);
    run(&mut f, b"STLS\r\n");
    f.tls_started();
    assert_eq!(run(&mut f, b"CAPA\r\n"), vec![send(after)]);
    // Implicit TLS.
    let mut f = Pop3Front::new(cfg(true, false, true), true);
    assert_eq!(run(&mut f, b"CAPA\r\n"), vec![send(after)]);
}

#[test]
fn user_pass_and_user_never_routes() {
    let mut f = open();
    assert_eq!(
        run(&mut f, b"USER alice@example.com\r\n"),
        vec![send("+OK\r\n")]
    );
    assert_eq!(
        run(&mut f, b"PASS pass with spaces \r\n"),
        vec![password(None, "alice@example.com", "pass with spaces ")]
    );
    // In flight: nothing parsed.
    assert_eq!(run(&mut f, b"STAT\r\nLIST\r\n"), vec![]);
    let reply = BackendReply {
        untagged: vec![],
        status: b"+OK Logged in.".to_vec(),
    };
    assert_eq!(
        f.login_result(LoginVerdict::Accepted(reply)),
        b"+OK Logged in.\r\n"
    );
    assert!(f.is_done());
    assert_eq!(f.next_action(), None);
    assert_eq!(f.into_remaining(), b"STAT\r\nLIST\r\n");
}

#[test]
fn pass_without_user_and_rejected_restarts() {
    let mut f = open();
    assert_eq!(
        run(&mut f, b"PASS x\r\n"),
        vec![send("-ERR No username given.\r\n")]
    );
    run(&mut f, b"USER bob\r\nPASS wrong\r\nPASS again\r\n");
    let reply = BackendReply {
        untagged: vec![],
        status: b"-ERR [AUTH] Authentication failed.".to_vec(),
    };
    assert_eq!(
        f.login_result(LoginVerdict::Rejected(reply)),
        b"-ERR [AUTH] Authentication failed.\r\n"
    );
    // The pipelined PASS now has no USER: third bad thing closes.
    assert_eq!(
        drain(&mut f),
        vec![
            send("-ERR No username given.\r\n"),
            Close(CloseReason::TooManyBadCommands)
        ]
    );
}

#[test]
fn verdict_replies() {
    let mut f = open();
    run(&mut f, b"USER u\r\nPASS p\r\n");
    assert_eq!(
        f.login_result(LoginVerdict::AuthFailed),
        b"-ERR [AUTH] Authentication failed.\r\n"
    );
    run(&mut f, b"USER u\r\nPASS p\r\n");
    assert_eq!(
        f.login_result(LoginVerdict::Unavailable(
            "down\r\nsee https://status".into()
        )),
        b"-ERR [SYS/TEMP] down  see https://status\r\n"
    );
    assert_eq!(f.next_action(), None);
    // Not in flight: nothing.
    assert_eq!(f.login_result(LoginVerdict::AuthFailed), b"");
    assert!(f.shutdown_bye().starts_with(b"-ERR [SYS/TEMP] "));
    assert!(f.timeout_bye().starts_with(b"-ERR "));
}

#[test]
fn auth_plain_with_and_without_initial_response() {
    // "\0alice\0pw" and "admin\0alice\0pw"
    let mut f = open();
    assert_eq!(
        run(&mut f, b"AUTH PLAIN AGFsaWNlAHB3\r\n"),
        vec![password(None, "alice", "pw")]
    );
    let mut f = open();
    assert_eq!(run(&mut f, b"auth plain\r\n"), vec![send("+ \r\n")]);
    assert_eq!(
        run(&mut f, b"YWRtaW4AYWxpY2UAcHc=\r\n"),
        vec![password(Some("admin"), "alice", "pw")]
    );
}

#[test]
fn auth_login_and_cancel_then_retry() {
    let mut f = open();
    assert_eq!(
        run(&mut f, b"AUTH LOGIN\r\n"),
        vec![send("+ VXNlcm5hbWU6\r\n")]
    );
    assert_eq!(
        run(&mut f, b"YWxpY2U=\r\n"),
        vec![send("+ UGFzc3dvcmQ6\r\n")]
    );
    assert_eq!(
        run(&mut f, b"*\r\n"),
        vec![send("-ERR Authentication aborted by client.\r\n")]
    );
    // Retry with the user as initial response.
    assert_eq!(
        run(&mut f, b"AUTH LOGIN YWxpY2U=\r\n"),
        vec![send("+ UGFzc3dvcmQ6\r\n")]
    );
    assert_eq!(
        run(&mut f, b"cHc=\r\n"),
        vec![password(None, "alice", "pw")]
    );
    // Cancels are not bad commands: four in a row keep the session.
    let mut f = open();
    let all = run(
        &mut f,
        b"AUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n*\r\nCAPA\r\n",
    );
    assert_eq!(all.len(), 7);
    assert_eq!(all[6], send(CAPA_OPEN));
}

#[test]
fn sasl_empty_response_and_bad_base64() {
    let mut f = open();
    // `=` is the empty response: not a valid PLAIN message.
    assert_eq!(
        run(&mut f, b"AUTH PLAIN =\r\n"),
        vec![send("-ERR Invalid SASL response.\r\n")]
    );
    assert_eq!(run(&mut f, b"AUTH PLAIN\r\n"), vec![send("+ \r\n")]);
    assert_eq!(
        run(&mut f, b"!!!\r\n"),
        vec![send("-ERR Invalid SASL response.\r\n")]
    );
    // LOGIN with an empty password is refused.
    let mut f = open();
    assert_eq!(
        run(&mut f, b"AUTH LOGIN YQ==\r\n=\r\n"),
        vec![
            send("+ UGFzc3dvcmQ6\r\n"),
            send("-ERR Invalid SASL response.\r\n")
        ]
    );
}

#[test]
fn auth_mechanisms_and_oauth() {
    let mut f = open();
    assert_eq!(
        run(&mut f, b"AUTH\r\n"),
        vec![send("+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n")]
    );
    assert_eq!(
        run(&mut f, b"AUTH XOAUTH2 dXNlcj1hAWF1dGg9QmVhcmVyIHQBAQ==\r\n"),
        vec![send("-ERR Unsupported authentication mechanism.\r\n")]
    );
    let mut f = Pop3Front::new(cfg(false, false, true), false);
    // user=a\x01auth=Bearer t\x01\x01
    let got = run(
        &mut f,
        b"AUTH XOAUTH2\r\ndXNlcj1hAWF1dGg9QmVhcmVyIHQBAQ==\r\n",
    );
    assert_eq!(got[0], send("+ \r\n"));
    match &got[1] {
        FrontAction::Login(req) => {
            assert_eq!(req.routing_user(), "a");
            assert!(matches!(
                req.credentials,
                Credentials::OAuth {
                    mechanism: OAuthMechanism::XOAuth2,
                    ..
                }
            ));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn login_commands_need_tls_when_required() {
    let mut f = Pop3Front::new(cfg(true, true, false), false);
    let err =
        "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections; use STLS.\r\n";
    assert_eq!(
        run(&mut f, b"USER a\r\nPASS b\r\nAUTH PLAIN AGEAYg==\r\n"),
        vec![
            send(err),
            send(err),
            send(err),
            Close(CloseReason::TooManyBadCommands)
        ]
    );
}

#[test]
fn stls_injection_and_refusals() {
    let mut f = Pop3Front::new(cfg(true, true, false), false);
    assert_eq!(
        run(&mut f, b"STLS\r\nUSER evil\r\n"),
        vec![Close(CloseReason::StartTlsInjection)]
    );
    assert_eq!(f.buffered_len(), 0);
    // Bytes arriving between the +OK and the StartTls action are injection too.
    let mut f = Pop3Front::new(cfg(true, true, false), false);
    f.feed(b"STLS\r\n");
    assert_eq!(
        f.next_action(),
        Some(send("+OK Begin TLS negotiation now.\r\n"))
    );
    f.feed(b"X");
    assert_eq!(f.next_action(), Some(Close(CloseReason::StartTlsInjection)));
    // Already active / not available.
    let mut f = Pop3Front::new(cfg(true, false, false), true);
    assert_eq!(
        run(&mut f, b"STLS\r\n"),
        vec![send("-ERR TLS is already active.\r\n")]
    );
    let mut f = Pop3Front::new(cfg(false, false, false), false);
    assert_eq!(
        run(&mut f, b"STLS\r\n"),
        vec![send("-ERR STLS is not available.\r\n")]
    );
}

#[test]
fn other_commands_and_bad_limit() {
    let mut f = open();
    assert_eq!(
        run(
            &mut f,
            b"APOP u 0123456789abcdef0123456789abcdef\r\nRETR 1\r\nHELO <script>\r\nCAPA\r\n"
        ),
        vec![
            send("-ERR APOP is not supported.\r\n"),
            send("-ERR Not logged in.\r\n"),
            send("-ERR Unknown command.\r\n"),
            Close(CloseReason::TooManyBadCommands)
        ]
    );
    assert_eq!(f.next_action(), None);
    f.feed(b"CAPA\r\n");
    assert_eq!(f.next_action(), None);
    let mut f = open();
    assert_eq!(
        run(&mut f, b"QUIT\r\nCAPA\r\n"),
        vec![
            send("+OK Logging out.\r\n"),
            Close(CloseReason::ClientLogout)
        ]
    );
}

#[test]
fn line_limits_and_nul() {
    let mut f = open();
    let mut line = b"USER ".to_vec();
    line.resize(253, b'a');
    line.extend_from_slice(b"\r\n");
    assert_eq!(line.len(), 255);
    // Exactly 255 octets with CRLF: accepted (RFC 2449 §4).
    assert_eq!(run(&mut f, &line), vec![send("+OK\r\n")]);
    let mut f = open();
    line.insert(5, b'a');
    assert_eq!(
        run(&mut f, &line),
        vec![
            send("-ERR Line too long, closing connection.\r\n"),
            Close(CloseReason::LineTooLong)
        ]
    );
    // SASL continuation lines may be up to 16 KiB (OAuth tokens of 8 KB and more).
    let mut f = open();
    run(&mut f, b"AUTH PLAIN\r\n");
    let long = vec![b'A'; 16 * 1024 - 2];
    f.feed(&long);
    assert_eq!(f.next_action(), None);
    f.feed(b"\r\n");
    assert_eq!(
        f.next_action(),
        Some(send("-ERR Invalid SASL response.\r\n"))
    );
    let mut f = open();
    run(&mut f, b"AUTH PLAIN\r\n");
    f.feed(&vec![b'A'; 17000]);
    assert_eq!(f.buffered_len(), 16 * 1024);
    assert_eq!(
        drain(&mut f),
        vec![
            send("-ERR Line too long, closing connection.\r\n"),
            Close(CloseReason::LineTooLong)
        ]
    );
    let mut f = open();
    assert_eq!(
        run(&mut f, b"US\0ER a\r\n"),
        vec![
            send("-ERR Protocol violation, closing connection.\r\n"),
            Close(CloseReason::ProtocolViolation)
        ]
    );
}

#[test]
fn overflow_while_login_in_flight_closes() {
    let mut f = open();
    run(&mut f, b"USER u\r\nPASS p\r\n");
    f.feed(&vec![b'x'; 17000]);
    assert_eq!(f.next_action(), Some(Close(CloseReason::LineTooLong)));
}

#[test]
fn pipelined_commands_in_order() {
    let mut f = open();
    assert_eq!(
        run(&mut f, b"CAPA\r\nUSER a@b\r\nPASS s\r\nLIST\r\n"),
        vec![send(CAPA_OPEN), send("+OK\r\n"), password(None, "a@b", "s")]
    );
    assert_eq!(f.buffered_len(), 6);
}

#[test]
fn debug_never_shows_buffered_secrets() {
    let mut f = open();
    f.feed(b"USER u\r\nPASS hunter2\r\n");
    let _ = f.next_action();
    assert!(!format!("{f:?}").contains("hunter2"));
    let _ = f.next_action();
    assert!(!format!("{f:?}").contains("hunter2"));
}
