//! Each fault mode of the fakes behaves as documented, and a normal fake serves a full
//! session (IMAP through the bench client, POP3 by hand), in plain TCP, implicit TLS and
//! STARTTLS/STLS (real rustls client handshakes against the fake's certificate).

use std::time::Duration;

use mailgate_testkit::client::{ConnectOptions, ImapClient, Io, TlsMode, tls_connector_pem};
use mailgate_testkit::fake::{
    FakeBackend, FakeConfig, FakeHandle, FaultMode, TempCode, TlsIdentity,
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(5);

/// A raw line-level peer for poking at fakes, over TCP or TLS.
struct Raw(BufReader<Box<dyn Io>>);

impl Raw {
    async fn connect(addr: std::net::SocketAddr) -> Raw {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Raw(BufReader::new(Box::new(tcp)))
    }

    /// TCP, then a TLS handshake verifying the fake's certificate as `name`.
    async fn connect_tls(fake: &FakeHandle, name: &str) -> Raw {
        let tcp = TcpStream::connect(fake.addr).await.expect("connect");
        let io = handshake(fake, name, Box::new(tcp))
            .await
            .expect("handshake in time")
            .expect("handshake");
        Raw(BufReader::new(io))
    }

    /// STARTTLS / STLS was answered: upgrade this connection (nothing may be buffered).
    async fn upgrade(self, fake: &FakeHandle) -> Raw {
        assert!(
            self.0.buffer().is_empty(),
            "bytes after the STARTTLS answer"
        );
        let io = handshake(fake, "localhost", self.0.into_inner())
            .await
            .expect("handshake in time")
            .expect("handshake");
        Raw(BufReader::new(io))
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

/// A real rustls client handshake (aws-lc-rs) trusting only the fake's certificate;
/// `Err(Elapsed)` if the server never completes it within SHORT.
async fn handshake(
    fake: &FakeHandle,
    name: &str,
    io: Box<dyn Io>,
) -> Result<std::io::Result<Box<dyn Io>>, tokio::time::error::Elapsed> {
    let pem = fake.cert_pem().expect("a TLS fake has a certificate");
    let connector = tls_connector_pem(pem.as_bytes()).expect("connector");
    let name = ServerName::try_from(name.to_owned()).expect("name");
    timeout(SHORT * 3, async move {
        let tls = connector.connect(name, io).await?;
        Ok(Box::new(tls) as Box<dyn Io>)
    })
    .await
}

async fn tls_fake(cfg: FakeConfig, tls: TlsMode, mode: FaultMode) -> FakeHandle {
    FakeBackend::spawn(cfg.with_tls(tls, None).with_mode(mode))
        .await
        .expect("spawn")
}

/// Sends `CAPA` and collects the capability lines.
async fn capa(r: &mut Raw) -> Vec<String> {
    r.send("CAPA\r\n").await;
    assert!(r.line().await.expect("capa").starts_with("+OK"));
    let mut caps = Vec::new();
    while let Some(l) = r.line().await {
        if l == ".\r\n" {
            break;
        }
        caps.push(l.trim_end().to_owned());
    }
    caps
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

// --- TLS towards the fake ---------------------------------------------------------------

#[tokio::test]
async fn imap_implicit_tls_and_starttls_full_sessions_through_client() {
    for tls in [TlsMode::Implicit, TlsMode::Starttls] {
        let fake = tls_fake(FakeConfig::imap("t"), tls, FaultMode::Normal).await;
        let pem = fake.cert_pem().expect("cert");
        let opts = ConnectOptions {
            tls,
            connector: Some(tls_connector_pem(pem.as_bytes()).expect("connector")),
            // The certificate holds the IP address too: verify against it.
            ..ConnectOptions::plain(fake.addr)
        };
        let mut c = timeout(LONG, ImapClient::connect(&opts))
            .await
            .expect("in time")
            .expect("connect");
        let caps = c.command("CAPABILITY").await.expect("caps");
        assert!(
            !caps.untagged[0].contains("STARTTLS"),
            "{tls:?}: STARTTLS offered inside TLS: {caps:?}"
        );
        c.login("u@d", "secret").await.expect("login");
        c.command("SELECT INBOX")
            .await
            .expect("select")
            .ok("SELECT")
            .expect("ok");
        let f = c.command("FETCH 1 (BODY[])").await.expect("fetch");
        assert_eq!(f.literal_bytes, 1024, "{tls:?}");
        assert_eq!(fake.stats().tls_handshakes, 1, "{tls:?}");
        assert_eq!(fake.stats().logins, 1, "{tls:?}");
    }
}

#[tokio::test]
async fn imap_starttls_is_advertised_and_discards_pipelined_bytes() {
    let fake = tls_fake(FakeConfig::imap("t"), TlsMode::Starttls, FaultMode::Normal).await;
    let mut r = Raw::connect(fake.addr).await;
    let g = r.line().await.expect("greeting");
    assert!(
        g.starts_with("* OK [CAPABILITY ") && g.contains(" STARTTLS"),
        "{g}"
    );
    r.send("a CAPABILITY\r\n").await;
    assert!(r.line().await.expect("caps").contains(" STARTTLS"));
    assert!(r.line().await.expect("ok").starts_with("a OK"));
    // Bytes behind STARTTLS in the same segment must never be executed inside TLS.
    r.send("b STARTTLS\r\nc LOGIN u@d secret\r\n").await;
    assert_eq!(
        r.line().await.as_deref(),
        Some("b OK Begin TLS negotiation now\r\n")
    );
    let mut r = r.upgrade(&fake).await;
    r.send("d NOOP\r\n").await;
    assert!(r.line().await.expect("noop").starts_with("d OK"));
    assert_eq!(fake.stats().logins, 0, "the injected LOGIN ran");
    // Plaintext fakes do not offer STARTTLS.
    let plain = FakeBackend::spawn(FakeConfig::imap("p"))
        .await
        .expect("spawn");
    assert!(plain.cert_pem().is_none());
    let mut r = Raw::connect(plain.addr).await;
    assert!(!r.line().await.expect("greeting").contains("STARTTLS"));
}

#[tokio::test]
async fn pop3_implicit_tls_and_stls_sessions() {
    // Implicit: the greeting comes inside TLS; the name checked is the IP address.
    let fake = tls_fake(FakeConfig::pop3("p"), TlsMode::Implicit, FaultMode::Normal).await;
    let mut r = Raw::connect_tls(&fake, "127.0.0.1").await;
    assert!(r.line().await.expect("greeting").starts_with("+OK"));
    assert!(!capa(&mut r).await.iter().any(|c| c == "STLS"));
    r.send("USER u@d\r\nPASS secret\r\nRETR 1\r\n").await;
    assert_eq!(r.line().await.as_deref(), Some("+OK\r\n"));
    assert!(r.line().await.expect("pass").starts_with("+OK Logged in"));
    assert!(r.line().await.expect("retr").starts_with("+OK 1024"));
    // STLS: advertised in CAPA, answered, then the session continues inside TLS.
    let fake = tls_fake(FakeConfig::pop3("p"), TlsMode::Starttls, FaultMode::Normal).await;
    let mut r = Raw::connect(fake.addr).await;
    assert!(r.line().await.expect("greeting").starts_with("+OK"));
    assert!(capa(&mut r).await.iter().any(|c| c == "STLS"));
    r.send("STLS\r\n").await;
    assert!(r.line().await.expect("stls").starts_with("+OK Begin TLS"));
    let mut r = r.upgrade(&fake).await;
    assert!(!capa(&mut r).await.iter().any(|c| c == "STLS"));
    r.send("USER u@d\r\nPASS secret\r\n").await;
    assert_eq!(r.line().await.as_deref(), Some("+OK\r\n"));
    assert!(r.line().await.expect("pass").starts_with("+OK Logged in"));
    assert_eq!(fake.stats().tls_handshakes, 1);
}

#[tokio::test]
async fn a_passed_in_identity_is_served_to_several_fakes() {
    let id = TlsIdentity::localhost().expect("identity");
    let a = FakeBackend::spawn(FakeConfig::imap("a").with_tls(TlsMode::Implicit, Some(id.clone())))
        .await
        .expect("spawn");
    let b = FakeBackend::spawn(FakeConfig::pop3("b").with_tls(TlsMode::Implicit, Some(id.clone())))
        .await
        .expect("spawn");
    assert_eq!(a.cert_pem(), Some(id.cert_pem.as_str()));
    assert_eq!(b.cert_pem(), a.cert_pem());
    let mut r = Raw::connect_tls(&b, "localhost").await;
    assert!(r.line().await.expect("greeting").starts_with("+OK"));
    // A certificate for another name is refused by the client.
    let tcp = TcpStream::connect(a.addr).await.expect("connect");
    let res = handshake(&a, "mail.example.net", Box::new(tcp))
        .await
        .expect("answered in time");
    assert!(res.is_err(), "wrong name accepted");
}

#[tokio::test]
async fn tls_stall_never_completes_a_handshake() {
    // Implicit TLS: the ClientHello is never answered, the connection stays open.
    for cfg in [FakeConfig::imap("x"), FakeConfig::pop3("x")] {
        let fake = tls_fake(cfg, TlsMode::Implicit, FaultMode::TlsStall).await;
        let tcp = TcpStream::connect(fake.addr).await.expect("connect");
        assert!(handshake(&fake, "localhost", Box::new(tcp)).await.is_err());
        assert_eq!(fake.stats().current_sessions, 1);
        assert_eq!(fake.stats().tls_handshakes, 0);
    }
    // STARTTLS (and with `tls: none`, where it is advertised all the same): the command
    // is answered, the handshake never is.
    for tls in [TlsMode::Starttls, TlsMode::None] {
        for (cfg, cmd, ok) in [
            (FakeConfig::imap("x"), "a STARTTLS\r\n", "a OK Begin TLS"),
            (FakeConfig::pop3("x"), "STLS\r\n", "+OK Begin TLS"),
        ] {
            let imap = cmd.starts_with("a ");
            let fake = tls_fake(cfg, tls, FaultMode::TlsStall).await;
            let mut r = Raw::connect(fake.addr).await;
            let greeting = r.line().await.expect("greeting");
            if imap {
                assert!(greeting.contains("STARTTLS"), "{tls:?}: {greeting}");
            } else {
                assert!(capa(&mut r).await.iter().any(|c| c == "STLS"), "{tls:?}");
            }
            r.send(cmd).await;
            assert!(r.line().await.expect("ok").starts_with(ok), "{tls:?} {cmd}");
            assert!(r.0.buffer().is_empty());
            let io = r.0.into_inner();
            if tls == TlsMode::Starttls {
                assert!(handshake(&fake, "localhost", io).await.is_err(), "{cmd}");
            } else {
                // No certificate at all: just check the silence after the OK.
                let mut r = Raw(BufReader::new(io));
                r.send("\x16\x03\x01\x00\x00").await;
                assert!(r.silent().await);
            }
            assert_eq!(fake.stats().current_sessions, 1, "{tls:?} {cmd}");
        }
    }
}

// --- the new fault modes -----------------------------------------------------------------

#[tokio::test]
async fn greeting_bye_refuses_and_closes() {
    for (cfg, want) in [
        (
            FakeConfig::imap("x"),
            "* BYE [UNAVAILABLE] Server overloaded\r\n",
        ),
        (
            FakeConfig::pop3("x"),
            "-ERR [SYS/TEMP] Server overloaded\r\n",
        ),
    ] {
        for tls in [TlsMode::None, TlsMode::Implicit] {
            let fake = tls_fake(cfg.clone(), tls, FaultMode::GreetingBye).await;
            let mut r = if tls == TlsMode::Implicit {
                Raw::connect_tls(&fake, "localhost").await
            } else {
                Raw::connect(fake.addr).await
            };
            assert_eq!(r.line().await.as_deref(), Some(want), "{tls:?}");
            assert_eq!(r.line().await, None, "{tls:?}: not closed");
        }
    }
}

#[tokio::test]
async fn login_temp_fail_answers_at_once_and_keeps_the_connection() {
    let cases = [
        (
            FakeConfig::imap("x"),
            TempCode::Unavailable,
            "a1 NO [UNAVAILABLE] Internal error occurred. Refer to server log for more information.\r\n",
        ),
        (
            FakeConfig::imap("x"),
            TempCode::InUse,
            "a1 NO [INUSE] Mailbox is locked by another session\r\n",
        ),
        (
            FakeConfig::pop3("x"),
            TempCode::SysTemp,
            "-ERR [SYS/TEMP] Temporary internal failure\r\n",
        ),
        (
            FakeConfig::pop3("x"),
            TempCode::InUse,
            "-ERR [IN-USE] Mailbox locked by another session\r\n",
        ),
    ];
    for (cfg, code, want) in cases {
        let imap = want.starts_with("a1 ");
        // A refused-password delay must not hold a temporary failure back: with a delay
        // longer than LONG, an answer at all proves it was not applied.
        let cfg = FakeConfig {
            auth_failure_delay: LONG * 2,
            ..cfg
        };
        let fake = FakeBackend::spawn(cfg.with_mode(FaultMode::LoginTempFail(code)))
            .await
            .expect("spawn");
        let mut r = Raw::connect(fake.addr).await;
        r.line().await;
        for attempt in 0..4 {
            if imap {
                r.send("a1 LOGIN u@d secret\r\n").await;
            } else {
                r.send("USER u@d\r\nPASS secret\r\n").await;
                assert_eq!(r.line().await.as_deref(), Some("+OK\r\n"));
            }
            assert_eq!(r.line().await.as_deref(), Some(want), "{code} #{attempt}");
        }
        if imap {
            r.send("a2 AUTHENTICATE PLAIN AHVAZABzZWNyZXQ=\r\n").await;
            let l = r.line().await.expect("auth");
            assert_eq!(l, want.replacen("a1", "a2", 1), "{code}");
        } else {
            r.send("AUTH PLAIN AHVAZABzZWNyZXQ=\r\n").await;
            assert_eq!(r.line().await.as_deref(), Some(want), "{code}");
        }
        let s = fake.stats();
        assert_eq!(
            (s.logins, s.sabotaged_logins, s.current_sessions),
            (0, 5, 1)
        );
    }
}

#[tokio::test]
async fn garbage_verdict_is_not_a_verdict() {
    for (cfg, login, want) in [
        (
            FakeConfig::imap("x"),
            "t7 LOGIN u@d secret\r\n",
            "t7 WHATEVER zz\r\n",
        ),
        (
            FakeConfig::pop3("x"),
            "USER u@d\r\nPASS secret\r\n",
            "hello?\r\n",
        ),
    ] {
        let fake = FakeBackend::spawn(cfg.with_mode(FaultMode::GarbageVerdict))
            .await
            .expect("spawn");
        let mut r = Raw::connect(fake.addr).await;
        r.line().await;
        r.send(login).await;
        if !login.starts_with("t7") {
            assert_eq!(r.line().await.as_deref(), Some("+OK\r\n"));
        }
        assert_eq!(r.line().await.as_deref(), Some(want));
        assert!(r.silent().await, "more than the garbage line");
        assert_eq!(fake.stats().logins, 0);
    }
}

#[tokio::test]
async fn close_after_login_ok_sends_the_ok_then_eof() {
    for tls in [TlsMode::None, TlsMode::Implicit] {
        for (cfg, login, ok) in [
            (
                FakeConfig::imap("x"),
                "a LOGIN u@d secret\r\n",
                "a OK [CAPABILITY",
            ),
            (
                FakeConfig::pop3("x"),
                "USER u@d\r\nPASS secret\r\n",
                "+OK Logged in",
            ),
        ] {
            let fake = tls_fake(cfg, tls, FaultMode::CloseAfterLoginOk).await;
            let mut r = if tls == TlsMode::Implicit {
                Raw::connect_tls(&fake, "localhost").await
            } else {
                Raw::connect(fake.addr).await
            };
            r.line().await;
            r.send(login).await;
            let mut l = r.line().await.expect("answer");
            if l == "+OK\r\n" {
                l = r.line().await.expect("pass answer");
            }
            assert!(l.starts_with(ok), "{tls:?}: {l}");
            let mut rest = Vec::new();
            // Inside TLS the close comes without close_notify: an error, but no data.
            let _ = timeout(LONG, r.0.read_to_end(&mut rest))
                .await
                .expect("closed in time");
            assert!(rest.is_empty(), "{tls:?}: {rest:?}");
            assert_eq!(fake.stats().logins, 1);
            assert!(fake.wait_for(|s| s.current_sessions == 0, LONG).await);
        }
    }
}

/// Logs in and asks for the message: IMAP `FETCH 1 (BODY[])`, POP3 `RETR 1`. Returns the
/// header line of the answer.
async fn login_and_fetch(r: &mut Raw, imap: bool) -> String {
    r.line().await.expect("greeting");
    if imap {
        r.send("a LOGIN u@d secret\r\nb SELECT INBOX\r\n").await;
        while !r.line().await.expect("select").starts_with("b OK") {}
        r.send("c FETCH 1 (BODY[])\r\n").await;
    } else {
        r.send("USER u@d\r\nPASS secret\r\n").await;
        r.line().await;
        r.line().await;
        r.send("RETR 1\r\n").await;
    }
    r.line().await.expect("fetch header")
}

#[tokio::test]
async fn close_mid_fetch_sends_half_the_message_then_eof() {
    for tls in [TlsMode::None, TlsMode::Implicit] {
        for (cfg, head) in [
            (FakeConfig::imap("x"), "* 1 FETCH (BODY[] {1024}\r\n"),
            (FakeConfig::pop3("x"), "+OK 1024 octets\r\n"),
        ] {
            let imap = head.starts_with('*');
            let fake = tls_fake(cfg, tls, FaultMode::CloseMidFetch).await;
            let mut r = if tls == TlsMode::Implicit {
                Raw::connect_tls(&fake, "localhost").await
            } else {
                Raw::connect(fake.addr).await
            };
            assert_eq!(login_and_fetch(&mut r, imap).await, head, "{tls:?}");
            let mut rest = Vec::new();
            let res = timeout(LONG, r.0.read_to_end(&mut rest))
                .await
                .expect("closed in time");
            assert_eq!(rest.len(), 512, "{tls:?} {head}");
            assert!(rest.starts_with(b"From: fake@x.invalid"));
            if tls == TlsMode::None {
                res.expect("a FIN, not a reset");
            }
            assert!(fake.wait_for(|s| s.current_sessions == 0, LONG).await);
        }
    }
}

#[tokio::test]
async fn stall_mid_splice_sends_half_the_message_then_nothing() {
    for (cfg, head) in [
        (FakeConfig::imap("x"), "* 1 FETCH (BODY[] {1024}\r\n"),
        (FakeConfig::pop3("x"), "+OK 1024 octets\r\n"),
    ] {
        let imap = head.starts_with('*');
        let fake = FakeBackend::spawn(cfg.with_mode(FaultMode::StallMidSplice))
            .await
            .expect("spawn");
        let mut r = Raw::connect(fake.addr).await;
        assert_eq!(login_and_fetch(&mut r, imap).await, head);
        let mut half = vec![0; 512];
        timeout(LONG, r.0.read_exact(&mut half))
            .await
            .expect("half in time")
            .expect("half");
        r.send("d NOOP\r\nNOOP\r\n").await;
        assert!(r.silent().await, "more than half a message");
        assert_eq!(fake.stats().current_sessions, 1, "closed");
        drop(r);
        assert!(fake.wait_for(|s| s.current_sessions == 0, LONG).await);
    }
}
