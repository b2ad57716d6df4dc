//! Property tests for both POP3 engines: feeding in any split yields the same actions as
//! feeding all at once; arbitrary bytes never panic and never exceed the buffer limits.

use mailgate_proto::action::BackendReply;
use mailgate_proto::pop3::{Pop3Front, Pop3Upstream};
use mailgate_proto::{
    Credentials, FrontAction, Limits, LoginRequest, LoginVerdict, Secret, UpstreamAction,
    UpstreamError,
};
use mailgate_proto::{FrontConfig, UpstreamConfig};
use proptest::prelude::*;

fn front() -> Pop3Front {
    let cfg = FrontConfig {
        require_tls_for_login: false,
        oauth: true,
        ..FrontConfig::default()
    };
    Pop3Front::new(cfg, false)
}

/// Feed `chunks` one after the other, draining actions after each; a login is answered
/// with a rejection so the engine goes on.
fn front_actions(chunks: &[&[u8]]) -> Vec<FrontAction> {
    let mut f = front();
    let mut out = Vec::new();
    for chunk in chunks {
        f.feed(chunk);
        assert!(f.buffered_len() <= 16 * 1024);
        while let Some(a) = f.next_action() {
            let login = matches!(a, FrontAction::Login(_));
            out.push(a);
            if login {
                let reply = BackendReply {
                    untagged: vec![],
                    status: b"-ERR [AUTH] Authentication failed.".to_vec(),
                };
                out.push(FrontAction::Send(
                    f.login_result(LoginVerdict::Rejected(reply)),
                ));
            }
        }
    }
    out
}

/// Valid client lines (none closes the session, none is a bad command).
fn valid_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"CAPA\r\n".to_vec()),
        Just(b"capa\n".to_vec()),
        Just(b"AUTH\r\n".to_vec()),
        "[a-z]{1,20}@[a-z]{1,10}\\.com".prop_map(|u| format!("USER {u}\r\n").into_bytes()),
        "[ -~]{1,40}".prop_map(|p| format!("USER u\r\nPASS {p}\r\n").into_bytes()),
        Just(b"AUTH PLAIN AGFsaWNlAHB3\r\n".to_vec()),
        Just(b"AUTH PLAIN\r\nYWRtaW4AYWxpY2UAcHc=\r\n".to_vec()),
        Just(b"AUTH LOGIN\r\nYWxpY2U=\r\n*\r\n".to_vec()),
        Just(b"AUTH LOGIN YWxpY2U=\r\ncHc=\r\n".to_vec()),
        Just(b"AUTH XOAUTH2 dXNlcj1hAWF1dGg9QmVhcmVyIHQBAQ==\r\n".to_vec()),
    ]
}

/// Arbitrary input built from cheap pieces: random bytes, long runs, and fragments that
/// drive the engines into their deeper states.
fn noise(max_run: usize) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..32),
        (any::<u8>(), 0..max_run).prop_map(|(b, n)| vec![b; n]),
        Just(b"\r\n".to_vec()),
        Just(b"AUTH PLAIN\r\n".to_vec()),
        Just(b"AUTH LOGIN\r\n".to_vec()),
        Just(b"USER a\r\nPASS b\r\n".to_vec()),
        Just(b"STLS\r\n".to_vec()),
        Just(b"+OK\r\n".to_vec()),
        Just(b"+OK [XCLIENT] x\r\n".to_vec()),
        Just(b"+ \r\n".to_vec()),
        Just(b".\r\n".to_vec()),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|v| v.concat())
}

fn split_points(len: usize, cuts: &[usize]) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    points.sort_unstable();
    points.dedup();
    points
}

fn chunks<'a>(data: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for &p in points {
        out.push(&data[start..p]);
        start = p;
    }
    out.push(&data[start..]);
    out
}

fn upstream() -> Pop3Upstream {
    let cfg = UpstreamConfig {
        limits: Limits::default(),
        starttls: false,
        forward: None,
    };
    let login = LoginRequest {
        credentials: Credentials::Password {
            authzid: None,
            authcid: "alice".into(),
            password: Secret::new("pw"),
        },
    };
    Pop3Upstream::new(cfg, login)
}

fn upstream_run(chunks: &[&[u8]]) -> (Vec<UpstreamAction>, Option<UpstreamError>, Vec<u8>) {
    let mut u = upstream();
    let mut out = Vec::new();
    for chunk in chunks {
        u.feed(chunk);
        loop {
            match u.next_action() {
                Ok(Some(a)) => out.push(a),
                Ok(None) => break,
                Err(e) => return (out, Some(e), Vec::new()),
            }
        }
    }
    (out, None, u.into_remaining())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn front_any_split_same_actions(
        lines in prop::collection::vec(valid_line(), 1..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let stream = lines.concat();
        let whole = front_actions(&[&stream]);
        let points = split_points(stream.len(), &cuts);
        let split = front_actions(&chunks(&stream, &points));
        prop_assert_eq!(&whole, &split);
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        prop_assert_eq!(&whole, &front_actions(&bytewise));
    }

    #[test]
    fn front_arbitrary_bytes_never_panic(
        data in noise(9_000),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let points = split_points(data.len(), &cuts);
        let _ = front_actions(&chunks(&data, &points));
    }

    #[test]
    fn upstream_any_split_same_result(
        capa in prop::collection::vec("[A-Z]{1,8}( [A-Z]{1,8}){0,3}", 0..10),
        verdict in prop_oneof![Just("+OK Logged in."), Just("-ERR [AUTH] Authentication failed.")],
        tail in "[ -~]{0,30}",
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = b"+OK <1.2@x> ready\r\n+OK\r\n".to_vec();
        for c in &capa {
            stream.extend_from_slice(c.as_bytes());
            stream.extend_from_slice(b"\r\n");
        }
        stream.extend_from_slice(b".\r\n+OK\r\n");
        stream.extend_from_slice(verdict.as_bytes());
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(tail.as_bytes());
        let whole = upstream_run(&[&stream]);
        prop_assert!(whole.1.is_none());
        prop_assert_eq!(whole.2.as_slice(), tail.as_bytes());
        let points = split_points(stream.len(), &cuts);
        prop_assert_eq!(&whole, &upstream_run(&chunks(&stream, &points)));
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        prop_assert_eq!(&whole, &upstream_run(&bytewise));
    }

    #[test]
    fn upstream_arbitrary_bytes_never_panic(
        data in noise(70_000),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let points = split_points(data.len(), &cuts);
        let mut u = upstream();
        for chunk in chunks(&data, &points) {
            u.feed(chunk);
            while let Ok(Some(_)) = u.next_action() {}
        }
        prop_assert!(u.into_remaining().len() <= Limits::default().upstream_max_line);
    }
}
