//! The backend client against scripted backends that answer nothing until every
//! pipelined command arrived: a client that waited for each reply would run into its own
//! answer deadline instead of a verdict.

use std::time::Duration;

use mailgate_config::RoutingTable;
use mailgate_proto::{
    ClientAddr, Credentials, ForwardInfo, Limits, LoginRequest, LoginVerdict, Protocol, Secret,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{BackendClient, Deadlines, Failure, Step, Target};

fn forward() -> ForwardInfo {
    ForwardInfo {
        client: ClientAddr {
            ip: "192.0.2.44".into(),
            port: 40000,
        },
        connected: ClientAddr {
            ip: "127.0.0.1".into(),
            port: 143,
        },
        session_id: "mg-1".into(),
        client_tls: false,
        proxy_ttl: mailgate_proto::login::PROXY_TTL,
        client_id: Vec::new(),
    }
}

fn login() -> LoginRequest {
    LoginRequest {
        credentials: Credentials::Password {
            authzid: None,
            authcid: "u@d".into(),
            password: Secret::new("secret"),
        },
    }
}

fn table(port: u16) -> RoutingTable {
    let text = format!(
        "backends:\n  b:\n    host: 127.0.0.1\n    imap_port: {port}\n    pop3_port: {port}\n    \
         forward_client: id\ndefault: b\n"
    );
    RoutingTable::parse(&text, std::path::Path::new("routing.yaml"))
        .expect("valid routing")
        .table
}

/// Read from `s` until `buf` holds `lines` complete lines; `false` at end of stream.
async fn read_lines(s: &mut TcpStream, buf: &mut Vec<u8>, lines: usize) -> bool {
    let mut chunk = [0u8; 1024];
    while buf.iter().filter(|b| **b == b'\n').count() < lines {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// A one-connection backend: greets, answers `setup` lock-step (one reply per line), then
/// reads `pipelined` lines before it answers them all with `answer` and closes.
async fn scripted(
    greeting: &'static [u8],
    setup: &'static [(&'static str, &'static [u8])],
    pipelined: usize,
    answer: &'static [u8],
) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return Vec::new();
        };
        let mut seen = Vec::new();
        if s.write_all(greeting).await.is_err() {
            return seen;
        }
        for (i, (_, reply)) in setup.iter().enumerate() {
            if !read_lines(&mut s, &mut seen, i + 1).await || s.write_all(reply).await.is_err() {
                return seen;
            }
        }
        if read_lines(&mut s, &mut seen, setup.len() + pipelined).await {
            let _ = s.write_all(answer).await;
        }
        seen
    });
    (port, task)
}

async fn converse(port: u16, protocol: Protocol) -> Result<super::LoggedIn, super::BackendError> {
    let table = table(port);
    let backend = table.backend("b").expect("backend b").clone();
    let target = Target {
        backend: &backend,
        protocol,
        proxy: None,
        forward: Some(forward()),
        limits: Limits::default(),
        deadlines: Deadlines::uniform(Duration::from_secs(3)),
    };
    BackendClient::new().login(target, login()).await
}

fn lines(seen: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(seen)
        .split_terminator("\r\n")
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test]
async fn imap_id_and_login_reach_the_backend_before_any_reply() {
    let (port, server) = scripted(
        b"* OK [CAPABILITY IMAP4rev1 ID AUTH=PLAIN] hi\r\n",
        &[],
        2,
        b"* ID NIL\r\nmg1 OK ID completed.\r\nmg2 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n",
    )
    .await;
    let done = converse(port, Protocol::Imap).await.expect("a verdict");
    assert!(
        matches!(done.verdict, LoginVerdict::Accepted(_)),
        "{done:?}"
    );
    let seen = server.await.expect("server");
    assert_eq!(lines(&seen), ["mg1 ID", "mg2 LOGIN"]);
}

#[tokio::test]
async fn imap_a_close_between_id_and_login_replies_is_a_lost_login() {
    let (port, server) = scripted(
        b"* OK [CAPABILITY IMAP4rev1 ID AUTH=PLAIN] hi\r\n",
        &[],
        2,
        b"mg1 OK ID completed.\r\n",
    )
    .await;
    let err = converse(port, Protocol::Imap)
        .await
        .expect_err("no verdict");
    assert_eq!(err.step, Step::Login, "{err}");
    assert!(
        matches!(err.failure, Failure::Closed | Failure::Io(_)),
        "{err}"
    );
    server.await.expect("server");
}

#[tokio::test]
async fn pop3_xclient_user_and_pass_go_together_to_a_pipelining_backend() {
    let (port, server) = scripted(
        b"+OK [XCLIENT] hi\r\n",
        &[(
            "CAPA",
            b"+OK\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\nXCLIENT\r\n.\r\n",
        )],
        3,
        b"+OK Updated\r\n+OK\r\n+OK Logged in.\r\n",
    )
    .await;
    let done = converse(port, Protocol::Pop3).await.expect("a verdict");
    assert!(
        matches!(done.verdict, LoginVerdict::Accepted(_)),
        "{done:?}"
    );
    let seen = server.await.expect("server");
    assert_eq!(
        lines(&seen),
        ["CAPA", "XCLIENT ADDR=192.0.2.44", "USER u@d", "PASS secret"]
    );
}

#[tokio::test]
async fn pop3_a_wrong_user_behind_xclient_is_a_refused_login() {
    let (port, server) = scripted(
        b"+OK [XCLIENT] hi\r\n",
        &[("CAPA", b"+OK\r\nPIPELINING\r\nUSER\r\nXCLIENT\r\n.\r\n")],
        3,
        b"+OK Updated\r\n-ERR [AUTH] Authentication failed.\r\n-ERR No USER\r\n",
    )
    .await;
    let done = converse(port, Protocol::Pop3).await.expect("a verdict");
    assert!(
        matches!(done.verdict, LoginVerdict::Rejected(_)),
        "{done:?}"
    );
    server.await.expect("server");
}
