//! The pipelined login relays (issue 12): IMAP `ID` and the login queued together, POP3
//! `XCLIENT`, `USER` and `PASS` queued together when the backend lists `PIPELINING`. Every
//! reply is still judged in order, with the verdicts of the lock-step conversation; every
//! failure between the replies is covered, and every conversation is also fed one byte
//! at a time.

use mailgate_proto::action::BackendReply;
use mailgate_proto::imap::ImapUpstream;
use mailgate_proto::pop3::Pop3Upstream;
use mailgate_proto::{
    ClientAddr, Credentials, ForwardInfo, Limits, LoginRequest, LoginVerdict, OAuthMechanism,
    Secret, UpstreamAction, UpstreamConfig, UpstreamError,
};

fn forward() -> ForwardInfo {
    let addr = |ip: &str, port| ClientAddr {
        ip: ip.into(),
        port,
    };
    ForwardInfo {
        client: addr("198.51.100.7", 40001),
        connected: addr("127.0.0.1", 143),
        session_id: "mg-2a".into(),
        client_tls: false,
        proxy_ttl: mailgate_proto::login::PROXY_TTL,
        client_id: vec![],
    }
}

fn config(starttls: bool, forwarding: bool) -> UpstreamConfig {
    UpstreamConfig {
        limits: Limits::default(),
        starttls,
        forward: forwarding.then(forward),
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

/// One action as text: `S:<bytes>`, `TLS`, `CRED`, `DONE:<kind>:<untagged>|<status>`,
/// `ERR:<variant>`.
fn render(a: Result<UpstreamAction, UpstreamError>) -> String {
    let done = |kind: &str, r: &BackendReply| {
        format!(
            "DONE:{kind}:{}|{}",
            String::from_utf8_lossy(&r.untagged),
            String::from_utf8_lossy(&r.status)
        )
    };
    match a {
        Ok(UpstreamAction::Send(b)) => format!("S:{}", String::from_utf8_lossy(&b)),
        Ok(UpstreamAction::StartTls) => "TLS".into(),
        Ok(UpstreamAction::CredentialsNext) => "CRED".into(),
        Ok(UpstreamAction::Done(LoginVerdict::Accepted(r))) => done("OK", &r),
        Ok(UpstreamAction::Done(LoginVerdict::Rejected(r))) => done("NO", &r),
        Ok(UpstreamAction::Done(LoginVerdict::Temporary(r, scope))) => {
            done(&format!("TEMP({scope:?})"), &r)
        }
        Ok(UpstreamAction::Done(other)) => format!("DONE:{other:?}"),
        Err(e) => format!("ERR:{e:?}"),
    }
}

/// Anything with the upstream engines' interface.
trait Engine {
    fn feed(&mut self, data: &[u8]);
    fn next(&mut self) -> Result<Option<UpstreamAction>, UpstreamError>;
}

impl Engine for ImapUpstream {
    fn feed(&mut self, data: &[u8]) {
        ImapUpstream::feed(self, data);
    }
    fn next(&mut self) -> Result<Option<UpstreamAction>, UpstreamError> {
        self.next_action()
    }
}

impl Engine for Pop3Upstream {
    fn feed(&mut self, data: &[u8]) {
        Pop3Upstream::feed(self, data);
    }
    fn next(&mut self) -> Result<Option<UpstreamAction>, UpstreamError> {
        self.next_action()
    }
}

/// Feed `input` in chunks of `chunk` bytes; every action until more bytes are needed
/// after the last chunk (an error ends the list).
fn run_chunked(e: &mut dyn Engine, input: &[u8], chunk: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = input.chunks(chunk.max(1)).collect();
    if pieces.is_empty() {
        pieces.push(b"");
    }
    for piece in pieces {
        e.feed(piece);
        loop {
            match e.next() {
                Ok(None) => break,
                Ok(Some(a)) => out.push(render(Ok(a))),
                Err(err) => {
                    out.push(render(Err(err)));
                    return out;
                }
            }
        }
    }
    out
}

/// The same conversation fed whole and one byte at a time: both must give `want`.
fn check<E: Engine>(make: impl Fn() -> E, steps: &[(&[u8], &[&str])]) {
    for chunk in [usize::MAX, 1] {
        let mut e = make();
        for (input, want) in steps {
            let got = run_chunked(&mut e, input, chunk);
            assert_eq!(
                got,
                *want,
                "chunk {chunk}, input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

const ID_LINE: &str = "S:mg1 ID (\"x-originating-ip\" \"198.51.100.7\" \"x-originating-port\" \"40001\" \
    \"x-connected-ip\" \"127.0.0.1\" \"x-connected-port\" \"143\" \"x-session-id\" \"mg-2a\" \
    \"x-proxy-ttl\" \"4\" \"x-client-transport\" \"insecure\")\r\n";

const GREETING_ID: &[u8] = b"* OK [CAPABILITY IMAP4rev1 ID SASL-IR AUTH=PLAIN] Dovecot ready.\r\n";

fn imap(login: LoginRequest) -> impl Fn() -> ImapUpstream {
    move || ImapUpstream::new(config(false, true), login.clone())
}

fn login_u_p() -> LoginRequest {
    password(None, "u", b"p")
}

const LOGIN_LINE: &str = "S:mg2 LOGIN \"u\" \"p\"\r\n";

#[test]
fn imap_id_and_login_are_queued_together_and_answered_in_order() {
    check(
        imap(login_u_p()),
        &[
            (GREETING_ID, &[ID_LINE, "CRED", LOGIN_LINE]),
            // ID's own untagged reply is not the client's; what follows it is.
            (
                b"* ID (\"name\" \"Dovecot\")\r\nmg1 OK ID completed.\r\n\
                  * CAPABILITY IMAP4rev1 IDLE\r\nmg2 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n* 1 EXISTS\r\n",
                &["DONE:OK:* CAPABILITY IMAP4rev1 IDLE\r\n|OK [CAPABILITY IMAP4rev1 IDLE] Logged in"],
            ),
        ],
    );
    let mut up = imap(login_u_p())();
    run_chunked(&mut up, GREETING_ID, usize::MAX);
    run_chunked(
        &mut up,
        b"mg1 OK\r\nmg2 OK Logged in\r\n* 1 EXISTS\r\n",
        usize::MAX,
    );
    assert_eq!(up.into_remaining(), b"* 1 EXISTS\r\n");
}

#[test]
fn imap_a_rejected_id_never_fails_the_login() {
    for id_reply in [
        &b"mg1 BAD Unknown command\r\n"[..],
        b"mg1 NO [PRIVACYREQUIRED] not from you\r\n",
        b"* ID NIL\r\nmg1 NO no\r\n",
    ] {
        check(
            imap(login_u_p()),
            &[
                (GREETING_ID, &[ID_LINE, "CRED", LOGIN_LINE]),
                (id_reply, &[]),
                (b"mg2 OK Logged in\r\n", &["DONE:OK:|OK Logged in"]),
            ],
        );
        check(
            imap(login_u_p()),
            &[
                (GREETING_ID, &[ID_LINE, "CRED", LOGIN_LINE]),
                (id_reply, &[]),
                (
                    b"mg2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
                    &["DONE:NO:|NO [AUTHENTICATIONFAILED] Authentication failed."],
                ),
            ],
        );
    }
}

#[test]
fn imap_verdicts_behind_id_are_the_lock_step_ones() {
    for (reply, want) in [
        (
            &b"mg2 NO [UNAVAILABLE] Internal error occurred.\r\n"[..],
            "DONE:TEMP(Backend):|NO [UNAVAILABLE] Internal error occurred.",
        ),
        (
            b"mg2 NO [INUSE] locked\r\n",
            "DONE:TEMP(Mailbox):|NO [INUSE] locked",
        ),
        (b"mg2 BAD no\r\n", "DONE:NO:|BAD no"),
        (b"* BYE Internal error\r\n", "ERR:Bye"),
        (b"mg2 WHATEVER zz\r\n", "ERR:Malformed"),
    ] {
        check(
            imap(login_u_p()),
            &[
                (GREETING_ID, &[ID_LINE, "CRED", LOGIN_LINE]),
                (b"mg1 OK ID completed.\r\n", &[]),
                (reply, &[want]),
            ],
        );
    }
}

#[test]
fn imap_trouble_between_the_two_replies() {
    let after_id: &[(&[u8], &[&str])] = &[
        // Garbage instead of the login's reply.
        (
            b"mg1 OK\r\nHTTP/1.1 400 Bad Request\r\n",
            &["ERR:Malformed"],
        ),
        // The login's tag before ID's: not the order the commands went in.
        (b"mg2 OK Logged in\r\n", &["ERR:Malformed"]),
        // An unknown tag.
        (b"mg7 OK\r\n", &["ERR:Malformed"]),
        // A continuation before ID was answered.
        (b"+ go\r\n", &["ERR:Malformed"]),
        // BYE while ID is pending.
        (b"* BYE shutting down\r\n", &["ERR:Bye"]),
        // A line too long.
        (&[b'x'; 70_000], &["ERR:LineTooLong"]),
    ];
    for (input, want) in after_id {
        check(
            imap(login_u_p()),
            &[(GREETING_ID, &[ID_LINE, "CRED", LOGIN_LINE]), (input, want)],
        );
    }
    // The backend closes after ID's reply: the engine waits, it never invents a verdict
    // (the driver turns the close into a failed login).
    let mut up = imap(login_u_p())();
    run_chunked(&mut up, GREETING_ID, usize::MAX);
    assert!(run_chunked(&mut up, b"mg1 OK ID completed.\r\n", usize::MAX).is_empty());
    assert_eq!(up.next_action(), Ok(None));
    // Untagged lines around ID's reply count against the limit together.
    let mut many = b"* OK x\r\n".repeat(40);
    many.extend_from_slice(b"mg1 OK\r\n");
    many.extend(b"* OK y\r\n".repeat(25));
    check(
        imap(login_u_p()),
        &[
            (GREETING_ID, &[ID_LINE, "CRED", LOGIN_LINE]),
            (&many, &["ERR:TooManyLines"]),
        ],
    );
}

#[test]
fn imap_literal_and_continuation_logins_wait_for_the_plus_after_id() {
    // A password that needs a literal: its first segment goes with ID, the data after `+`.
    check(
        imap(password(None, "bob", "pä".as_bytes())),
        &[
            (
                GREETING_ID,
                &[ID_LINE, "CRED", "S:mg2 LOGIN \"bob\" {3}\r\n"],
            ),
            (b"mg1 OK\r\n+ go ahead\r\n", &["S:pä\r\n"]),
            (b"mg2 OK Logged in\r\n", &["DONE:OK:|OK Logged in"]),
        ],
    );
    // AUTHENTICATE PLAIN without SASL-IR: the response after `+`.
    let no_ir = || ImapUpstream::new(config(false, true), password(Some("z"), "u", b"p"));
    check(
        no_ir,
        &[
            (
                b"* OK [CAPABILITY IMAP4rev1 ID AUTH=PLAIN] hi\r\n",
                &[ID_LINE, "CRED", "S:mg2 AUTHENTICATE PLAIN\r\n"],
            ),
            (b"* ID NIL\r\nmg1 BAD no\r\n+ \r\n", &["S:egB1AHA=\r\n"]),
            (b"mg2 NO bad\r\n", &["DONE:NO:|NO bad"]),
        ],
    );
    // With SASL-IR one line carries it.
    check(
        imap(password(Some("z"), "u", b"p")),
        &[
            (
                GREETING_ID,
                &[ID_LINE, "CRED", "S:mg2 AUTHENTICATE PLAIN egB1AHA=\r\n"],
            ),
            (b"mg1 OK\r\nmg2 OK hi\r\n", &["DONE:OK:|OK hi"]),
        ],
    );
}

#[test]
fn imap_nothing_is_pipelined_before_the_greeting_or_tls() {
    // A refusing greeting: no ID, no credentials.
    for (greeting, want) in [
        (&b"* BYE too busy\r\n"[..], "ERR:GreetingRefused"),
        (b"* PREAUTH [CAPABILITY IMAP4rev1 ID] hi\r\n", "ERR:Preauth"),
        (b"HTTP/1.1 400\r\n", "ERR:Malformed"),
    ] {
        check(imap(login_u_p()), &[(greeting, &[want])]);
    }
    // STARTTLS first; the capabilities after TLS choose ID and the login.
    let tls = || ImapUpstream::new(config(true, true), login_u_p());
    let mut up = tls();
    assert_eq!(
        run_chunked(
            &mut up,
            b"* OK [CAPABILITY IMAP4rev1 ID STARTTLS] hi\r\n",
            usize::MAX
        ),
        ["S:mg1 STARTTLS\r\n"]
    );
    assert_eq!(run_chunked(&mut up, b"mg1 OK go\r\n", usize::MAX), ["TLS"]);
    up.tls_started();
    assert_eq!(run_chunked(&mut up, b"", 1), ["S:mg2 CAPABILITY\r\n"]);
    let got = run_chunked(
        &mut up,
        b"* CAPABILITY IMAP4rev1 ID\r\nmg2 OK\r\n",
        usize::MAX,
    );
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].starts_with("S:mg3 ID ("), "{got:?}");
    assert_eq!(got[1..], ["CRED", "S:mg4 LOGIN \"u\" \"p\"\r\n"]);
    // Without ID over TLS: the login alone.
    let mut up = tls();
    run_chunked(
        &mut up,
        b"* OK [CAPABILITY IMAP4rev1 ID STARTTLS] hi\r\n",
        1,
    );
    run_chunked(&mut up, b"mg1 OK go\r\n", 1);
    up.tls_started();
    run_chunked(&mut up, b"", 1);
    assert_eq!(
        run_chunked(&mut up, b"* CAPABILITY IMAP4rev1\r\nmg2 OK\r\n", 1),
        ["CRED", "S:mg3 LOGIN \"u\" \"p\"\r\n"]
    );
}

#[test]
fn imap_a_mechanism_the_backend_lacks_sends_neither_id_nor_credentials() {
    let oauth = LoginRequest {
        credentials: Credentials::OAuth {
            mechanism: OAuthMechanism::XOAuth2,
            user: "a@b".into(),
            initial_response: Secret::new("user=a@b\x01auth=Bearer t\x01\x01"),
        },
    };
    let mut up = ImapUpstream::new(config(false, true), oauth);
    let got = run_chunked(&mut up, GREETING_ID, usize::MAX);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("DONE:"), "{got:?}");
}

// ---- POP3 ----

const XCLIENT: &str = "S:XCLIENT ADDR=198.51.100.7 PORT=40001 DESTADDR=127.0.0.1 DESTPORT=143 \
    SESSION=mg-2a TTL=4 CLIENT-TRANSPORT=insecure\r\n";

/// Dovecot 2.3's greeting on a trusted network and its CAPA.
const DOVECOT: &[u8] = b"+OK [XCLIENT] Dovecot (Debian) ready.\r\n";
const CAPA_PIPELINING: &[u8] = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n\
AUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n";
const CAPA_LOCK_STEP: &[u8] = b"+OK\r\nCAPA\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n";

fn pop3(forwarding: bool, login: LoginRequest) -> impl Fn() -> Pop3Upstream {
    move || Pop3Upstream::new(config(false, forwarding), login.clone())
}

#[test]
fn pop3_xclient_user_pass_go_together_when_the_backend_pipelines() {
    let queued: &[&str] = &[XCLIENT, "CRED", "S:USER u\r\n", "S:PASS p\r\n"];
    check(
        pop3(true, login_u_p()),
        &[
            (DOVECOT, &["S:CAPA\r\n"]),
            (CAPA_PIPELINING, queued),
            (
                b"+OK Updated\r\n+OK\r\n+OK Logged in.\r\n+OK 0 messages\r\n",
                &["DONE:OK:|+OK Logged in."],
            ),
        ],
    );
    let mut up = pop3(true, login_u_p())();
    run_chunked(&mut up, DOVECOT, usize::MAX);
    run_chunked(&mut up, CAPA_PIPELINING, usize::MAX);
    run_chunked(&mut up, b"+OK Updated\r\n+OK\r\n+OK Logged in.\r\n+OK 0", 1);
    assert!(up.forwarded());
    assert_eq!(up.into_remaining(), b"+OK 0");
    // Without forwarding: USER and PASS together.
    check(
        pop3(false, login_u_p()),
        &[
            (DOVECOT, &["S:CAPA\r\n"]),
            (CAPA_PIPELINING, &["CRED", "S:USER u\r\n", "S:PASS p\r\n"]),
            (b"+OK\r\n", &[]),
            (b"+OK Logged in.\r\n", &["DONE:OK:|+OK Logged in."]),
        ],
    );
}

#[test]
fn pop3_every_reply_of_the_pipeline_is_judged_as_in_lock_step() {
    let queued: &[&str] = &[XCLIENT, "CRED", "S:USER u\r\n", "S:PASS p\r\n"];
    let cases: &[(&[u8], &str)] = &[
        // A refused XCLIENT does not block the login.
        (
            b"-ERR Invalid parameters\r\n+OK\r\n+OK Logged in.\r\n",
            "DONE:OK:|+OK Logged in.",
        ),
        // USER refused: that is the verdict (PASS's reply is not awaited).
        (
            b"+OK\r\n-ERR [AUTH] no such user\r\n-ERR No USER\r\n",
            "DONE:NO:|-ERR [AUTH] no such user",
        ),
        (
            b"+OK\r\n+OK\r\n-ERR [AUTH] Authentication failed.\r\n",
            "DONE:NO:|-ERR [AUTH] Authentication failed.",
        ),
        (
            b"+OK\r\n+OK\r\n-ERR [SYS/TEMP] try later\r\n",
            "DONE:TEMP(Backend):|-ERR [SYS/TEMP] try later",
        ),
        (
            b"+OK\r\n+OK\r\n-ERR [IN-USE] locked\r\n",
            "DONE:TEMP(Mailbox):|-ERR [IN-USE] locked",
        ),
        // Garbage between the replies.
        (b"+OK\r\nhello?\r\n", "ERR:Malformed"),
        (b"+OK\r\n+OK\r\n* OK IMAP\r\n", "ERR:Malformed"),
        // A continuation where no SASL exchange runs.
        (b"+OK\r\n+ \r\n", "ERR:Malformed"),
    ];
    for (replies, want) in cases {
        check(
            pop3(true, login_u_p()),
            &[
                (DOVECOT, &["S:CAPA\r\n"]),
                (CAPA_PIPELINING, queued),
                (replies, &[want]),
            ],
        );
    }
    // The backend closes between the replies: the engine waits for more, no verdict.
    let mut up = pop3(true, login_u_p())();
    run_chunked(&mut up, DOVECOT, usize::MAX);
    run_chunked(&mut up, CAPA_PIPELINING, usize::MAX);
    assert!(run_chunked(&mut up, b"+OK Updated\r\n+OK\r\n", usize::MAX).is_empty());
    assert_eq!(up.next_action(), Ok(None));
}

#[test]
fn pop3_auth_plain_goes_behind_xclient() {
    check(
        pop3(true, password(Some("admin"), "alice", b"pw")),
        &[
            (DOVECOT, &["S:CAPA\r\n"]),
            (
                CAPA_PIPELINING,
                &[XCLIENT, "CRED", "S:AUTH PLAIN YWRtaW4AYWxpY2UAcHc=\r\n"],
            ),
            (b"+OK\r\n+OK Logged in.\r\n", &["DONE:OK:|+OK Logged in."]),
        ],
    );
    // Too long for one line: `AUTH PLAIN` goes along, the response after `+`.
    let long = "x".repeat(300);
    let mut up = pop3(true, password(None, "alice", long.as_bytes()))();
    run_chunked(&mut up, DOVECOT, usize::MAX);
    assert_eq!(
        run_chunked(&mut up, CAPA_PIPELINING, usize::MAX),
        [XCLIENT, "CRED", "S:AUTH PLAIN\r\n"]
    );
    let got = run_chunked(&mut up, b"+OK\r\n+ \r\n", 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("S:AGFsaWNlAHh4"), "{got:?}");
    assert_eq!(
        run_chunked(&mut up, b"-ERR [AUTH] no\r\n", 1),
        ["DONE:NO:|-ERR [AUTH] no"]
    );
}

#[test]
fn pop3_without_pipelining_every_command_waits() {
    check(
        pop3(true, login_u_p()),
        &[
            (DOVECOT, &["S:CAPA\r\n"]),
            (CAPA_LOCK_STEP, &[XCLIENT]),
            (b"+OK\r\n", &["CRED", "S:USER u\r\n"]),
            (b"+OK\r\n", &["S:PASS p\r\n"]),
            (b"+OK Logged in.\r\n", &["DONE:OK:|+OK Logged in."]),
        ],
    );
    // CAPA refused (RFC 1939 server): nothing known, nothing pipelined.
    check(
        pop3(false, login_u_p()),
        &[
            (b"+OK hi\r\n", &["S:CAPA\r\n"]),
            (b"-ERR what?\r\n", &["CRED", "S:USER u\r\n"]),
        ],
    );
}

#[test]
fn pop3_nothing_is_pipelined_before_stls() {
    let mut up = Pop3Upstream::new(config(true, true), login_u_p());
    assert_eq!(
        run_chunked(&mut up, b"+OK [XCLIENT] hi\r\n", usize::MAX),
        ["S:CAPA\r\n"]
    );
    assert_eq!(
        run_chunked(
            &mut up,
            b"+OK\r\nPIPELINING\r\nUSER\r\nSTLS\r\nXCLIENT\r\n.\r\n",
            usize::MAX
        ),
        ["S:STLS\r\n"]
    );
    assert_eq!(run_chunked(&mut up, b"+OK go\r\n", usize::MAX), ["TLS"]);
    up.tls_started();
    assert_eq!(run_chunked(&mut up, b"", 1), ["S:CAPA\r\n"]);
    // What counts is the CAPA over TLS: here without PIPELINING.
    assert_eq!(
        run_chunked(&mut up, b"+OK\r\nUSER\r\nXCLIENT\r\n.\r\n", 1),
        [XCLIENT]
    );
    // The greeting is judged before anything is sent.
    check(
        pop3(true, login_u_p()),
        &[(b"-ERR [SYS/TEMP] busy\r\n", &["ERR:GreetingRefused"])],
    );
}
