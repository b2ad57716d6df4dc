//! Backend faults real servers cannot produce on demand (issue #4), answered
//! `NO [UNAVAILABLE]` / `-ERR [SYS/TEMP]` quickly and never silently; client STARTTLS
//! injection; OAuth pass-through; IPv6. The server runs in-process (see `common`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use mailgate::listener::ListenerKind;
use mailgate::proxy::{self, Listeners};
use mailgate_config::{Config, RoutingTable};
use mailgate_testkit::fake::{FakeBackend, FakeConfig, FaultMode};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

// --- issue #4: backend faults -----------------------------------------------------------

/// Every fault of a backend during the login relay is answered `NO [UNAVAILABLE]` soon
/// after the failure is known (never a silent close, never a bare BAD), and the client may
/// retry on the same connection once the backend works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_faults_are_answered_unavailable_and_the_client_can_retry() {
    // (mode, extra routing keys, longest acceptable answer time)
    let timeouts = Duration::from_millis(700);
    let cases: Vec<(FaultMode, &str, Duration)> = vec![
        // no greeting: the greeting timeout (700 ms) decides
        (FaultMode::NoGreeting, "", timeouts + Duration::from_secs(2)),
        // greeting, then silence: the login timeout decides
        (
            FaultMode::StallAfterGreeting,
            "",
            timeouts + Duration::from_secs(2),
        ),
        // reset during login, PREAUTH greeting, injection after STARTTLS: known at once
        (FaultMode::ResetDuringLogin, "", Duration::from_secs(2)),
        (FaultMode::PreauthGreeting, "", Duration::from_secs(2)),
        (
            FaultMode::InjectAfterStartTls,
            "tls: starttls\ntls_verify: false",
            Duration::from_secs(2),
        ),
    ];
    let mut fakes = Vec::new();
    for (mode, _, _) in &cases {
        fakes.push(fake(mode.clone()).await);
    }
    let names: Vec<String> = (0..cases.len()).map(|i| format!("b{i}")).collect();
    let domains: Vec<String> = (0..cases.len()).map(|i| format!("d{i}.test")).collect();
    let backs: Vec<Back> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, extra, _))| Back::imap(&names[i], &fakes[i], &domains[i]).with(extra))
        .collect();
    let limits = "    backend_connect_timeout: 700ms\n    backend_greeting_timeout: 700ms\n    \
                  backend_login_timeout: 700ms";
    let proxy = Proxy::start(&backs, "", limits, false).await;

    for (i, (mode, _, bound)) in cases.iter().enumerate() {
        let user = format!("u@{}", domains[i]);
        let mut c = Client::connect(proxy.imap).await;
        let t = Instant::now();
        let reply = c.imap_login("a1", &user).await;
        let took = t.elapsed();
        assert_unavailable(&reply, "a1", &names[i]);
        assert!(
            took < *bound,
            "{mode}: answered after {took:?} (bound {bound:?})"
        );
        // Retry on the same connection once the backend behaves (a STARTTLS backend needs
        // a real handshake, which the fake cannot do: its retry is just answered again).
        if matches!(mode, FaultMode::InjectAfterStartTls) {
            let again = c.imap_login("a2", &user).await;
            assert_unavailable(&again, "a2", &names[i]);
        } else {
            fakes[i].set_mode(FaultMode::Normal);
            let ok = c.imap_login("a2", &user).await;
            assert!(ok.starts_with("a2 OK"), "{mode}: retry got {ok:?}");
            assert_eq!(fakes[i].stats().logins, 1, "{mode}");
        }
        eprintln!("{mode}: NO [UNAVAILABLE] after {took:?}");
    }
    proxy.stop().await;
}

/// POP3 gets `-ERR [SYS/TEMP]` for the same faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_backend_faults_are_answered_sys_temp() {
    let no_greeting = FakeBackend::spawn(FakeConfig::pop3("p0").with_mode(FaultMode::NoGreeting))
        .await
        .expect("spawn");
    let reset = FakeBackend::spawn(FakeConfig::pop3("p1").with_mode(FaultMode::ResetDuringLogin))
        .await
        .expect("spawn");
    let backs = [
        Back::pop3("p0", &no_greeting, "p0.test"),
        Back::pop3("p1", &reset, "p1.test"),
    ];
    let limits = "    backend_greeting_timeout: 700ms\n    backend_login_timeout: 700ms";
    let proxy = Proxy::start(&backs, "", limits, false).await;
    for (name, fake) in [("p0", &no_greeting), ("p1", &reset)] {
        let mut c = Client::connect(proxy.pop3).await;
        c.send(&format!("USER u@{name}.test")).await;
        assert!(c.line().await.starts_with("+OK"));
        let t = Instant::now();
        c.send("PASS secret").await;
        let reply = c.line().await;
        assert!(
            reply.starts_with(&format!("-ERR [SYS/TEMP] {name} is unavailable")),
            "{name}: {reply:?}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{name}: {:?}",
            t.elapsed()
        );
        fake.set_mode(FaultMode::Normal);
        c.send(&format!("USER u@{name}.test")).await;
        assert!(c.line().await.starts_with("+OK"));
        c.send("PASS secret").await;
        let ok = c.line().await;
        assert!(ok.starts_with("+OK"), "{name}: retry got {ok:?}");
    }
    proxy.stop().await;
}

/// Bytes a client pipelines behind its STARTTLS are never executed: the connection is
/// closed without a handshake and without contacting the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_injected_after_client_starttls_close_the_connection() {
    let f = fake(FaultMode::Normal).await;
    let proxy = Proxy::start(&[Back::imap("b", &f, "d.test")], "", "", true).await;
    let mut c = Client::connect(proxy.imap).await;
    c.w.write_all(b"a1 STARTTLS\r\na2 LOGIN u@d.test secret\r\n")
        .await
        .expect("write");
    let rest = c
        .read_to_end(Duration::from_secs(5))
        .await
        .expect("connection closed");
    let text = String::from_utf8_lossy(&rest);
    assert!(!text.contains("a2 OK"), "{text:?}");
    assert_eq!(f.stats().connections, 0, "the backend was contacted");

    // Same for POP3 STLS.
    let mut c = Client::connect(proxy.pop3).await;
    c.w.write_all(b"STLS\r\nUSER u@d.test\r\nPASS secret\r\n")
        .await
        .expect("write");
    let rest = c
        .read_to_end(Duration::from_secs(5))
        .await
        .expect("connection closed");
    assert!(!String::from_utf8_lossy(&rest).contains("+OK Logged in"));
    assert_eq!(f.stats().connections, 0, "the backend was contacted");
    proxy.stop().await;
}

// --- OAuth pass-through -------------------------------------------------------------------

/// With `oauth: true`, XOAUTH2 is advertised; the login routes on the token's user (not on
/// anything else the client says) and the token reaches the backend unchanged. Without it,
/// the mechanism is neither advertised nor accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_routes_on_the_token_user_and_replays_the_token() {
    use base64::Engine as _;
    let a = FakeBackend::spawn(FakeConfig::imap("a"))
        .await
        .expect("spawn");
    let b = FakeBackend::spawn(FakeConfig::imap("b"))
        .await
        .expect("spawn");
    let backs = [Back::imap("a", &a, "a.test"), Back::imap("b", &b, "b.test")];
    let token = |user: &str, bearer: &str| {
        base64::engine::general_purpose::STANDARD
            .encode(format!("user={user}\u{1}auth=Bearer {bearer}\u{1}\u{1}"))
    };

    let proxy = Proxy::start_with_config_extra(&backs, "oauth: true\n").await;
    let mut c = Client::connect(proxy.imap).await;
    c.send("c1 CAPABILITY").await;
    let caps = c.line().await;
    assert!(caps.contains("AUTH=XOAUTH2"), "{caps}");
    assert!(c.line().await.starts_with("c1 OK"));
    let reply = c
        .imap(
            "x1",
            &format!("AUTHENTICATE XOAUTH2 {}", token("carol@b.test", "secret")),
        )
        .await;
    assert!(reply.starts_with("x1 OK"), "{reply}");
    assert_eq!(b.logged_in_users(), vec!["carol@b.test".to_string()]);
    assert!(
        a.logged_in_users().is_empty(),
        "routed to the wrong backend"
    );
    // A wrong token is the backend's NO, passed on.
    let mut c2 = Client::connect(proxy.imap).await;
    let reply = c2
        .imap(
            "x2",
            &format!("AUTHENTICATE XOAUTH2 {}", token("dave@a.test", "expired")),
        )
        .await;
    assert!(reply.starts_with("x2 NO"), "{reply}");
    proxy.stop().await;

    let proxy = Proxy::start_with_config_extra(&backs, "").await;
    let mut c = Client::connect(proxy.imap).await;
    c.send("c1 CAPABILITY").await;
    let caps = c.line().await;
    assert!(!caps.contains("XOAUTH2"), "{caps}");
    assert!(c.line().await.starts_with("c1 OK"));
    let reply = c
        .imap(
            "x1",
            &format!("AUTHENTICATE XOAUTH2 {}", token("carol@b.test", "secret")),
        )
        .await;
    assert!(
        reply.starts_with("x1 NO") || reply.starts_with("x1 BAD"),
        "{reply}"
    );
    proxy.stop().await;
}

// --- IPv6 ------------------------------------------------------------------------------

/// Listeners and backends over IPv6; the client's IPv6 address is forwarded in ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener_and_backend() {
    let f = FakeBackend::spawn(FakeConfig {
        bind: "[::1]:0".parse().expect("addr"),
        ..FakeConfig::imap("v6")
    })
    .await
    .expect("spawn on ::1");
    let dir = tempfile::tempdir().expect("tempdir");
    let routing = format!(
        "backends:\n  v6:\n    host: \"::1\"\n    imap_port: {}\ndomains:\n  d.test: v6\n",
        f.addr.port()
    );
    std::fs::write(dir.path().join("routing.yaml"), &routing).expect("write");
    let config = Config::parse(
        "listen:\n  imap: \"[::1]:0\"\nrouting_file: routing.yaml\nlimits:\n  auth_failure_delay: 0s\n\
         shutdown_grace: 1s\n",
        &dir.path().join("mailgate.yaml"),
    )
    .expect("config");
    let loaded = RoutingTable::load(&config.routing_file).expect("routing");
    let listener = mailgate::listener::bind("[::1]:0".parse().expect("addr")).expect("bind ::1");
    let addr = listener.local_addr().expect("addr");
    let shared = proxy::Proxy::new(config, loaded.table, None);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(proxy::serve(
        shared,
        Listeners {
            public: vec![(ListenerKind::Imap, listener)],
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let mut c = Client::connect(addr).await;
    assert!(c.imap_login("a1", "u@d.test").await.starts_with("a1 OK"));
    let ids = f.client_ids();
    let forwarded = ids
        .iter()
        .flatten()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-originating-ip"))
        .map(|(_, v)| v.clone());
    assert_eq!(forwarded.as_deref(), Some("::1"));
    drop(c);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
