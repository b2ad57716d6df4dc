//! The public edge under attack, through the running server: a client that writes without
//! reading is closed at the pre-auth deadline (and frees its per-IP slot); the connection
//! cap answers `* BYE [UNAVAILABLE]`; one user tried from many addresses is held back; a
//! wrong password and an unknown domain are answered after the same delay.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Back, Client, Proxy, fake};
use mailgate_testkit::fake::{FakeBackend, FakeConfig, FaultMode};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

/// A client connection from a chosen loopback address.
async fn connect_from(src: &str, to: SocketAddr) -> Client {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(format!("{src}:0").parse().expect("addr"))
        .expect("bind source");
    let tcp = sock.connect(to).await.expect("connect");
    let (r, w) = tcp.into_split();
    let mut c = Client {
        r: BufReader::new(r),
        w,
    };
    let greeting = c.line().await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_at_the_preauth_deadline() {
    let f = fake(FaultMode::Normal).await;
    let limits = "    preauth_timeout: 2s\n    max_sessions_per_ip: 1";
    let proxy = Proxy::start(&[Back::imap("b", &f, "b.test")], "", limits, false).await;
    let tcp = tokio::net::TcpStream::connect(proxy.imap)
        .await
        .expect("connect");
    let (_r, mut w) = tcp.into_split();
    let started = Instant::now();
    // CAPABILITY answers ~7x what it costs: the answers pile up unread.
    let flood = b"a CAPABILITY\r\n".repeat(4096);
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(1), w.write_all(&flood)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break true,
            // Our own writes block once mailgate stopped reading: it is parked on us.
            Err(_) => {}
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
        // The per-IP slot is free again once mailgate closed the session.
        if started.elapsed() > Duration::from_secs(2) {
            let probe = tokio::net::TcpStream::connect(proxy.imap)
                .await
                .expect("connect");
            let mut line = String::new();
            let mut r = BufReader::new(probe);
            let got = tokio::time::timeout(Duration::from_secs(1), r.read_line(&mut line)).await;
            if matches!(got, Ok(Ok(_))) && line.starts_with("* OK") {
                break true;
            }
        }
    };
    assert!(
        closed,
        "the non-reading client still holds its session after 20 s"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2 + 6),
        "closed {:?} after an 2 s pre-auth deadline",
        started.elapsed()
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_answers_bye_unavailable() {
    let f = fake(FaultMode::Normal).await;
    let limits = "    max_connections: 2";
    let proxy = Proxy::start(&[Back::imap("b", &f, "b.test")], "", limits, false).await;
    let _a = Client::connect(proxy.imap).await;
    let _b = Client::connect(proxy.imap).await;
    let tcp = tokio::net::TcpStream::connect(proxy.imap)
        .await
        .expect("connect");
    let mut r = BufReader::new(tcp);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
        .await
        .expect("answer")
        .expect("read");
    assert!(line.starts_with("* BYE [UNAVAILABLE]"), "{line}");
    let text = proxy.shared.metrics().encode();
    assert!(
        text.contains("mailgate_connections_refused_total{reason=\"max_connections\"} 1"),
        "{text}"
    );
    drop(_a);
    // The slot comes back when a session ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tcp = tokio::net::TcpStream::connect(proxy.imap)
            .await
            .expect("connect");
        let mut r = BufReader::new(tcp);
        let mut line = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), r.read_line(&mut line)).await;
        if line.starts_with("* OK") {
            break;
        }
        assert!(Instant::now() < deadline, "cap never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_spraying_one_user_from_many_addresses_is_held_back() {
    let f = fake(FaultMode::Normal).await;
    let limits = "    max_auth_failures_per_ip: 100\n    max_auth_failures_per_user: 3\n    \
                  auth_failure_delay: 0s";
    let proxy = Proxy::start(&[Back::imap("b", &f, "b.test")], "", limits, false).await;
    for i in 2..5 {
        let mut c = connect_from(&format!("127.0.0.{i}"), proxy.imap).await;
        let reply = c.imap("a", "LOGIN victim@b.test wrong").await;
        assert!(reply.starts_with("a NO"), "{reply}");
    }
    let mut c = connect_from("127.0.0.9", proxy.imap).await;
    let t = Instant::now();
    let reply = c.imap("a", "LOGIN victim@b.test wrong").await;
    let held = t.elapsed();
    assert!(reply.starts_with("a NO"), "{reply}");
    assert!(
        held >= Duration::from_millis(200),
        "not held back: {held:?}"
    );
    // Another user from the same address is not.
    let t = Instant::now();
    let reply = c.imap("b", "LOGIN other@b.test secret").await;
    assert!(reply.starts_with("b OK"), "{reply}");
    assert!(t.elapsed() < held, "{:?} vs {held:?}", t.elapsed());
    proxy.stop().await;
}

/// No oracle for hosted domains: an unknown domain and a wrong password on a backend that
/// delays its own refusals are answered after the same fixed delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_domain_take_the_same_time() {
    let mut cfg = FakeConfig::imap("slow");
    cfg.auth_failure_delay = Duration::from_millis(800);
    let f = FakeBackend::spawn(cfg).await.expect("spawn");
    let limits = "    auth_failure_delay: 1500ms\n    max_auth_failures_per_ip: 0\n    \
                  max_auth_failures_per_user: 0";
    let proxy = Proxy::start(&[Back::imap("b", &f, "b.test")], "", limits, false).await;
    let mut times = Vec::new();
    for user in ["x@b.test", "x@unknown.test"] {
        let mut c = Client::connect(proxy.imap).await;
        let t = Instant::now();
        let reply = c.imap("a", &format!("LOGIN {user} wrong")).await;
        times.push(t.elapsed());
        assert!(reply.starts_with("a NO [AUTHENTICATIONFAILED]"), "{reply}");
    }
    for t in &times {
        assert!(*t >= Duration::from_millis(1500), "{times:?}");
    }
    // Before, the hosted domain took the backend's delay on top: 2.3 s vs 1.5 s.
    let gap = times[0].abs_diff(times[1]);
    assert!(gap < Duration::from_millis(500), "{times:?}");
    proxy.stop().await;
}
