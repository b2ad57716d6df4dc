//! Each fault mode of the fakes behaves as documented, and a normal fake serves a full
//! session (IMAP through the bench client, POP3 by hand).

use std::time::Duration;

use mailgate_bench::client::{ConnectOptions, ImapClient};
use mailgate_bench::fake::{FakeBackend, FakeConfig, FaultMode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(5);

/// A raw line-level peer for poking at fakes.
struct Raw(BufReader<TcpStream>);

impl Raw {
    async fn connect(addr: std::net::SocketAddr) -> Raw {
        Raw(BufReader::new(
            TcpStream::connect(addr).await.expect("connect"),
        ))
    }
    async fn send(&mut self, s: &str) {
        self.0
            .get_mut()
            .write_all(s.as_bytes())
            .await
            .expect("write");
    }
    /// The next line, or None on EOF; panics after LONG.
    async fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        let n = timeout(LONG, self.0.read_line(&mut l))
            .await
            .expect("line in time")
            .expect("read");
        (n > 0).then_some(l)
    }
    /// True if nothing at all arrives within SHORT.
    async fn silent(&mut self) -> bool {
        let mut b = [0u8; 4096];
        timeout(SHORT, self.0.read(&mut b)).await.is_err()
    }
}

#[tokio::test]
async fn imap_normal_session_through_client() {
    timeout(LONG, imap_normal_session()).await.expect("in time");
}

async fn imap_normal_session() {
    let fake = FakeBackend::spawn(FakeConfig::imap("mail1"))
        .await
        .expect("spawn");
    let mut c = ImapClient::connect(&ConnectOptions::plain(fake.addr))
        .await
        .expect("connect");
    let id = c
        .command(r#"ID ("name" "test" "x-originating-ip" "192.0.2.7")"#)
        .await
        .expect("id")
        .ok("ID")
        .expect("ok");
    assert!(id.untagged[0].contains(r#""x-backend" "mail1""#), "{id:?}");
    let bad = c
        .command(r#"LOGIN "u@example.com" "wrong""#)
        .await
        .expect("login");
    assert!(bad.line.contains("NO [AUTHENTICATIONFAILED]"), "{bad:?}");
    let ok = c.login("u@example.com", "secret").await.expect("login");
    assert!(ok.line.contains("[CAPABILITY IMAP4rev1 IDLE"), "{ok:?}");
    c.command("SELECT INBOX")
        .await
        .expect("select")
        .ok("SELECT")
        .expect("ok");
    let f = c
        .command("FETCH 1 (BODY[])")
        .await
        .expect("fetch")
        .ok("FETCH")
        .expect("ok");
    assert_eq!(f.literal_bytes, 1024);
    c.start_idle().await.expect("idle");
    c.stop_idle().await.expect("done").ok("IDLE").expect("ok");
    c.command("LOGOUT")
        .await
        .expect("logout")
        .ok("LOGOUT")
        .expect("ok");
    let s = fake.stats();
    assert_eq!((s.connections, s.logins, s.failed_logins), (1, 1, 1));
    assert_eq!(
        fake.client_ids()[0][1],
        ("x-originating-ip".into(), "192.0.2.7".into())
    );
    assert_eq!(fake.logged_in_users(), ["u@example.com"]);
    assert!(fake.wait_for(|s| s.current_sessions == 0, LONG).await);
    fake.shutdown().await;
}

#[tokio::test]
async fn imap_authenticate_plain_ir_continuation_and_literals() {
    let fake = FakeBackend::spawn(FakeConfig::imap("m"))
        .await
        .expect("spawn");
    let mut r = Raw::connect(fake.addr).await;
    assert!(
        r.line()
            .await
            .expect("greeting")
            .starts_with("* OK [CAPABILITY IMAP4rev1 SASL-IR")
    );
    // "\0u@d\0secret"
    r.send("a AUTHENTICATE PLAIN AHVAZABzZWNyZXQ=\r\n").await;
    assert!(r.line().await.expect("ok").starts_with("a OK [CAPABILITY"));
    let mut r = Raw::connect(fake.addr).await;
    r.line().await;
    r.send("b AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(r.line().await.as_deref(), Some("+ \r\n"));
    r.send("AHVAZABzZWNyZXQ=\r\n").await;
    assert!(r.line().await.expect("ok").starts_with("b OK"));
    let mut r = Raw::connect(fake.addr).await;
    r.line().await;
    r.send("c LOGIN {3}\r\n").await;
    assert!(r.line().await.expect("cont").starts_with('+'));
    r.send("u@d {6+}\r\nsecret\r\n").await;
    assert!(r.line().await.expect("ok").starts_with("c OK"));
    assert_eq!(fake.stats().logins, 3);
}

#[tokio::test]
async fn pop3_normal_session_with_xclient() {
    let fake = FakeBackend::spawn(FakeConfig::pop3("pop1"))
        .await
        .expect("spawn");
    let mut r = Raw::connect(fake.addr).await;
    assert!(r.line().await.expect("greeting").starts_with("+OK"));
    r.send("CAPA\r\n").await;
    let mut caps = Vec::new();
    while let Some(l) = r.line().await {
        if l == ".\r\n" {
            break;
        }
        caps.push(l.trim_end().to_owned());
    }
    for want in ["USER", "SASL PLAIN", "XCLIENT"] {
        assert!(caps.iter().any(|c| c == want), "{caps:?}");
    }
    r.send("XCLIENT ADDR=192.0.2.7 PORT=4711\r\nUSER u@d\r\nPASS secret\r\nSTAT\r\n")
        .await;
    assert_eq!(r.line().await.as_deref(), Some("+OK\r\n"));
    assert_eq!(r.line().await.as_deref(), Some("+OK\r\n"));
    assert!(r.line().await.expect("pass").starts_with("+OK Logged in"));
    assert_eq!(r.line().await.as_deref(), Some("+OK 1 1024\r\n"));
    r.send("RETR 1\r\n").await;
    assert!(r.line().await.expect("retr").starts_with("+OK 1024"));
    let mut body = 0;
    while let Some(l) = r.line().await {
        if l == ".\r\n" {
            break;
        }
        body += l.len();
    }
    assert_eq!(body, 1024);
    r.send("QUIT\r\n").await;
    assert!(r.line().await.expect("quit").starts_with("+OK"));
    let x = &fake.xclients()[0];
    assert_eq!(x[0], ("ADDR".into(), "192.0.2.7".into()));
    assert_eq!(x[1], ("PORT".into(), "4711".into()));
    let mut r = Raw::connect(fake.addr).await;
    r.line().await;
    r.send("AUTH PLAIN AHVAZAB3cm9uZw==\r\n").await; // wrong password
    assert!(r.line().await.expect("auth").starts_with("-ERR [AUTH]"));
    assert_eq!(fake.stats().failed_logins, 1);
}

#[tokio::test]
async fn no_greeting_says_nothing() {
    for cfg in [FakeConfig::imap("x"), FakeConfig::pop3("x")] {
        let fake = FakeBackend::spawn(cfg.with_mode(FaultMode::NoGreeting))
            .await
            .expect("spawn");
        let mut r = Raw::connect(fake.addr).await;
        assert!(r.silent().await);
        assert_eq!(fake.stats().current_sessions, 1);
    }
}

#[tokio::test]
async fn stall_after_greeting_never_answers() {
    for cfg in [FakeConfig::imap("x"), FakeConfig::pop3("x")] {
        let fake = FakeBackend::spawn(cfg.with_mode(FaultMode::StallAfterGreeting))
            .await
            .expect("spawn");
        let mut r = Raw::connect(fake.addr).await;
        assert!(r.line().await.is_some());
        r.send("a CAPABILITY\r\nCAPA\r\n").await;
        assert!(r.silent().await);
    }
}

#[tokio::test]
async fn reset_during_login_sends_rst() {
    for (cfg, login) in [
        (FakeConfig::imap("x"), "a LOGIN u secret\r\n"),
        (FakeConfig::pop3("x"), "USER u\r\nPASS secret\r\n"),
    ] {
        let fake = FakeBackend::spawn(cfg.with_mode(FaultMode::ResetDuringLogin))
            .await
            .expect("spawn");
        let mut r = Raw::connect(fake.addr).await;
        r.line().await;
        r.send(login).await;
        let mut buf = Vec::new();
        let res = timeout(LONG, r.0.read_to_end(&mut buf))
            .await
            .expect("in time");
        let err = res.expect_err("reset, not EOF");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(fake.stats().sabotaged_logins, 1);
    }
}

#[tokio::test]
async fn preauth_greeting() {
    let fake = FakeBackend::spawn(FakeConfig::imap("x").with_mode(FaultMode::PreauthGreeting))
        .await
        .expect("spawn");
    let mut r = Raw::connect(fake.addr).await;
    assert!(r.line().await.expect("greeting").starts_with("* PREAUTH"));
}

#[tokio::test]
async fn inject_after_starttls_in_same_segment() {
    for (cfg, cmd, ok) in [
        (FakeConfig::imap("x"), "a STARTTLS\r\n", "a OK Begin TLS"),
        (FakeConfig::pop3("x"), "STLS\r\n", "+OK Begin TLS"),
    ] {
        let fake = FakeBackend::spawn(cfg.with_mode(FaultMode::InjectAfterStartTls))
            .await
            .expect("spawn");
        let mut r = Raw::connect(fake.addr).await;
        assert!(r.line().await.expect("greeting").contains("STARTTLS") || cmd == "STLS\r\n");
        r.send(cmd).await;
        assert!(r.line().await.expect("ok").starts_with(ok));
        // The injected line is already buffered: it came in the same write.
        assert!(!r.0.buffer().is_empty());
        assert!(r.line().await.is_some());
        assert!(r.silent().await);
    }
}

#[tokio::test]
async fn slow_responses_delay_every_response() {
    let d = Duration::from_millis(150);
    let fake = FakeBackend::spawn(FakeConfig::imap("x").with_mode(FaultMode::SlowResponses(d)))
        .await
        .expect("spawn");
    let t0 = tokio::time::Instant::now();
    let mut c = ImapClient::connect(&ConnectOptions::plain(fake.addr))
        .await
        .expect("connect");
    c.login("u@d", "secret").await.expect("login");
    assert!(t0.elapsed() >= 2 * d, "{:?}", t0.elapsed());
}

#[tokio::test]
async fn flapping_alternates_healthy_and_refusing() {
    let period = Duration::from_millis(400);
    let fake = FakeBackend::spawn(FakeConfig::imap("x").with_mode(FaultMode::Flapping(period)))
        .await
        .expect("spawn");
    let mut r = Raw::connect(fake.addr).await;
    assert!(r.line().await.is_some(), "healthy first");
    tokio::time::sleep(period + Duration::from_millis(100)).await;
    let mut r = Raw::connect(fake.addr).await;
    let mut buf = Vec::new();
    assert!(
        timeout(LONG, r.0.read_to_end(&mut buf))
            .await
            .expect("in time")
            .is_err()
    );
    tokio::time::sleep(period).await;
    let mut r = Raw::connect(fake.addr).await;
    assert!(r.line().await.is_some(), "healthy again");
}

#[tokio::test]
async fn login_hangs_after_working_capability() {
    for (cfg, pre, login) in [
        (
            FakeConfig::imap("x"),
            "a CAPABILITY\r\n",
            "b LOGIN u secret\r\n",
        ),
        (
            FakeConfig::pop3("x"),
            "CAPA\r\n",
            "USER u\r\nPASS secret\r\n",
        ),
    ] {
        let fake = FakeBackend::spawn(cfg.with_mode(FaultMode::LoginHangs))
            .await
            .expect("spawn");
        let mut r = Raw::connect(fake.addr).await;
        r.line().await;
        r.send(pre).await;
        assert!(r.line().await.is_some(), "capability answered");
        r.send(login).await;
        // Drain what CAPA/USER answered, then silence.
        let mut quiet = false;
        for _ in 0..20 {
            if r.silent().await {
                quiet = true;
                break;
            }
        }
        assert!(quiet);
        assert!(fake.wait_for(|s| s.sabotaged_logins == 1, LONG).await);
        assert_eq!(fake.stats().logins, 0);
    }
}

#[tokio::test]
async fn set_mode_applies_to_new_connections_and_shutdown_closes_all() {
    let fake = FakeBackend::spawn(FakeConfig::imap("x"))
        .await
        .expect("spawn");
    let mut first = Raw::connect(fake.addr).await;
    assert!(first.line().await.is_some());
    fake.set_mode(FaultMode::NoGreeting);
    assert_eq!(fake.mode(), FaultMode::NoGreeting);
    let mut second = Raw::connect(fake.addr).await;
    assert!(second.silent().await);
    assert!(fake.wait_for(|s| s.current_sessions == 2, LONG).await);
    fake.shutdown().await;
    assert_eq!(first.line().await, None);
    assert_eq!(second.line().await, None);
}
