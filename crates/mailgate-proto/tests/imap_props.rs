//! Property tests for both IMAP engines: any split of a stream gives the same actions as
//! feeding it whole, and arbitrary bytes never panic nor make an engine hold more than
//! its limits.

use mailgate_proto::action::BackendReply;
use mailgate_proto::imap::{ImapFront, ImapUpstream};
use mailgate_proto::{
    Credentials, FrontAction, Limits, LoginRequest, LoginVerdict, Secret, UpstreamAction,
};
use mailgate_proto::{FrontConfig, UpstreamConfig};
use proptest::prelude::*;

/// An action with its contents (`Debug` shows only lengths of what actions carry).
fn render_front(a: &FrontAction) -> String {
    match a {
        FrontAction::Send(b) => format!("Send({})", String::from_utf8_lossy(b)),
        FrontAction::Login(req) => format!("Login({})", render_credentials(&req.credentials)),
        other => format!("{other:?}"),
    }
}

fn render_credentials(c: &Credentials) -> String {
    match c {
        Credentials::Password {
            authzid,
            authcid,
            password,
        } => format!(
            "Password({authzid:?}, {authcid:?}, {:?})",
            String::from_utf8_lossy(password.expose())
        ),
        Credentials::OAuth {
            mechanism,
            user,
            initial_response,
        } => format!(
            "OAuth({mechanism:?}, {user:?}, {:?})",
            String::from_utf8_lossy(initial_response.expose())
        ),
    }
}

fn render_reply(r: &BackendReply) -> String {
    format!(
        "{:?}|{:?}",
        String::from_utf8_lossy(&r.untagged),
        String::from_utf8_lossy(&r.status)
    )
}

fn render_upstream(a: &UpstreamAction) -> String {
    match a {
        UpstreamAction::Send(b) => format!("Send({})", String::from_utf8_lossy(b)),
        UpstreamAction::Done(v) => match v {
            LoginVerdict::Accepted(r) => format!("Accepted({})", render_reply(r)),
            LoginVerdict::Rejected(r) => format!("Rejected({})", render_reply(r)),
            LoginVerdict::Temporary(r, scope) => {
                format!("Temporary({}, {scope:?})", render_reply(r))
            }
            other => format!("{other:?}"),
        },
        other => format!("{other:?}"),
    }
}

fn front_config(limits: Limits) -> FrontConfig {
    FrontConfig {
        limits,
        require_tls_for_login: false,
        oauth: true,
        ..FrontConfig::default()
    }
}

/// Drive a front engine through `chunks`; logins are answered `Rejected` so the session
/// goes on. Returns every action plus the bytes `login_result` produced.
fn drive_front(chunks: &[Vec<u8>], limits: Limits) -> Vec<String> {
    let cap = limits.max_line + 2 * limits.max_literal;
    let mut f = ImapFront::new(front_config(limits), false);
    let mut log = Vec::new();
    for chunk in chunks {
        f.feed(chunk);
        while let Some(a) = f.next_action() {
            match &a {
                FrontAction::Login(_) => {
                    let reply = BackendReply {
                        untagged: Vec::new(),
                        status: b"NO nope".to_vec(),
                    };
                    let bytes = f.login_result(LoginVerdict::Rejected(reply));
                    log.push(format!(
                        "{} -> {}",
                        render_front(&a),
                        String::from_utf8_lossy(&bytes)
                    ));
                }
                FrontAction::StartTls => {
                    log.push("TLS".into());
                    f.tls_started();
                }
                _ => log.push(render_front(&a)),
            }
        }
        assert!(f.buffered() <= cap, "holds {} > {cap}", f.buffered());
    }
    log
}

fn split(data: &[u8], cuts: &[prop::sample::Index]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut prev = 0;
    for p in points.into_iter().chain([data.len()]) {
        out.push(data[prev..p].to_vec());
        prev = p;
    }
    out
}

fn command() -> impl Strategy<Value = Vec<u8>> {
    let lines: Vec<&'static [u8]> = vec![
        b"a NOOP\r\n",
        b"b CAPABILITY\r\n",
        b"c ID (\"name\" \"x\" \"os\" NIL)\r\n",
        b"d LOGIN alice \"p\\\"w\"\r\n",
        b"e LOGIN {5}\r\nalice {3+}\r\npwd\r\n",
        b"f AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n",
        b"g AUTHENTICATE PLAIN\r\nAGFsaWNlAHB3\r\n",
        b"h AUTHENTICATE LOGIN\r\nYWxpY2U=\r\n*\r\n",
        b"i LOGIN {11}\r\nj LOGOUT\r\n\r\n {2}\r\npw\r\n",
        b"k SELECT INBOX\r\n",
        b"l ID NIL\r\n",
    ];
    proptest::sample::select(lines).prop_map(<[u8]>::to_vec)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn front_any_split_same_actions(
        cmds in proptest::collection::vec(command(), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let stream = cmds.concat();
        let whole = drive_front(std::slice::from_ref(&stream), Limits::default());
        let bytewise: Vec<Vec<u8>> = stream.iter().map(|b| vec![*b]).collect();
        prop_assert_eq!(&whole, &drive_front(&split(&stream, &cuts), Limits::default()));
        prop_assert_eq!(&whole, &drive_front(&bytewise, Limits::default()));
    }

    #[test]
    fn front_arbitrary_bytes_never_panic_nor_overhold(
        chunks in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![
                    4 => any::<u8>(),
                    1 => Just(b'\n'), 1 => Just(b'{'), 1 => Just(b'}'), 1 => Just(b' '),
                ],
                0..96,
            ),
            0..12,
        ),
    ) {
        let limits = Limits {
            max_line: 64,
            max_literal: 32,
            max_bad_commands: 1000,
            ..Limits::default()
        };
        drive_front(&chunks, limits);
    }

    #[test]
    fn upstream_any_split_same_actions(
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        authzid in any::<bool>(),
        sasl_ir in any::<bool>(),
    ) {
        let ir = if sasl_ir { " SASL-IR" } else { "" };
        let stream = format!(
            "* OK hi\r\n* CAPABILITY IMAP4rev1 ID{ir}\r\nmg1 OK done\r\n+ \r\n+ \r\n\
             * CAPABILITY IMAP4rev1\r\nmg2 OK Logged in\r\n* 1 EXISTS\r\n"
        );
        let whole = drive_upstream(&[stream.clone().into_bytes()], authzid);
        prop_assert_eq!(&whole, &drive_upstream(&split(stream.as_bytes(), &cuts), authzid));
    }

    #[test]
    fn upstream_arbitrary_bytes_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..12),
        prefix in any::<bool>(),
    ) {
        let mut all = Vec::new();
        if prefix {
            all.push(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] x\r\n".to_vec());
        }
        all.extend(chunks);
        drive_upstream(&all, false);
    }
}

fn drive_upstream(chunks: &[Vec<u8>], authzid: bool) -> Vec<String> {
    let login = LoginRequest {
        credentials: Credentials::Password {
            authzid: authzid.then(|| "z@example.com".to_string()),
            authcid: "alice".into(),
            password: Secret::new("pä"),
        },
    };
    let config = UpstreamConfig {
        limits: Limits {
            upstream_max_line: 256,
            ..Limits::default()
        },
        starttls: false,
        forward: None,
    };
    let mut up = ImapUpstream::new(config, login);
    let mut log = Vec::new();
    for chunk in chunks {
        up.feed(chunk);
        loop {
            match up.next_action() {
                Ok(None) => break,
                Ok(Some(UpstreamAction::StartTls)) => {
                    log.push("TLS".to_string());
                    up.tls_started();
                }
                Ok(Some(a)) => log.push(render_upstream(&a)),
                Err(e) => {
                    log.push(format!("ERR {e:?}"));
                    return log;
                }
            }
        }
    }
    log.push(format!("{:?}", up.into_remaining()));
    log
}
