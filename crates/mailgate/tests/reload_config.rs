//! A reload re-reads mailgate.yaml too: the greeting, limits, health settings, client
//! limits, admin settings and listeners change at run time; a change only a restart can
//! apply refuses the whole reload, which then changes nothing.

mod common;

use std::time::Duration;

use common::{Back, CAP, Client, Proxy, fake};
use mailgate::reload::{ReloadError, Trigger};
use mailgate_testkit::fake::FaultMode;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;

fn config_path(p: &Proxy) -> std::path::PathBuf {
    p._dir.path().join("mailgate.yaml")
}

fn edit(p: &Proxy, f: impl Fn(&str) -> String) {
    let path = config_path(p);
    let text = std::fs::read_to_string(&path).expect("read config");
    std::fs::write(&path, f(&text)).expect("write config");
}

async fn greeting(addr: std::net::SocketAddr) -> String {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut r = tokio::io::BufReader::new(tcp);
    let mut line = String::new();
    tokio::time::timeout(CAP, r.read_line(&mut line))
        .await
        .expect("greeting within the cap")
        .expect("read");
    line.trim_end().to_string()
}

fn metrics_text(p: &Proxy) -> String {
    p.shared.metrics().encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_limits_health_and_admin_settings_reload_and_keep_backend_state() {
    let a = fake(FaultMode::Normal).await;
    let proxy = Proxy::start(&[Back::imap("a", &a, "a.test")], "", "", false).await;
    assert!(proxy.shared.health().drain("a"), "drain before the reload");
    let before = proxy.shared.runtime().snapshot();
    assert!(!greeting(proxy.imap).await.contains("Welcome to the test"));

    edit(&proxy, |t| {
        t.replace("health:\n", "health:\n    fall: 9\n    kick_window: 7s\n")
            .replace("limits:\n", "limits:\n    idle_timeout: 45m\n")
            .replace("max_sessions_per_ip: 0", "max_sessions_per_ip: 1")
            .replace("listen:\n", "listen:\n  proxy_from: [127.0.0.2]\n")
            + "greeting: Welcome to the test\nadmin:\n  domain_check: false\noauth: true\n"
    });
    let report = proxy
        .shared
        .reloader()
        .reload(Trigger::Admin)
        .await
        .expect("reload");
    assert!(report.unchanged, "the routing file did not change");
    for key in [
        "health.fall",
        "health.kick_window",
        "admin.domain_check",
        "limits.idle_timeout",
        "limits.max_sessions_per_ip",
        "greeting",
    ] {
        assert!(
            report.config_changes.contains(&key),
            "{key} in {:?}",
            report.config_changes
        );
    }
    let after = proxy.shared.runtime().snapshot();
    assert_eq!(after.generation, before.generation + 1);
    assert_eq!(after.limits.idle_timeout, Duration::from_secs(45 * 60));
    assert!(!after.admin.domain_check);
    assert!(after.front.oauth);
    assert_eq!(
        after.proxy_from,
        vec!["127.0.0.2".parse::<std::net::IpAddr>().expect("ip")]
    );
    assert!(report.config_changes.contains(&"oauth"));
    assert!(report.config_changes.contains(&"listen.proxy_from"));
    let settings = proxy.shared.health().settings();
    assert_eq!(settings.fall, 9);
    assert_eq!(settings.kick_window, Duration::from_secs(7));
    assert!(
        proxy.status("a").drained,
        "the drain flag survives a reload"
    );

    // The new greeting for new connections, and the per-IP cap (1) in force: while one
    // connection from 127.0.0.1 is open, the next is refused. (Earlier connections of
    // this test may still be counted for a moment after they closed: retry the first.)
    let deadline = std::time::Instant::now() + CAP;
    let (_first, g) = loop {
        let tcp = TcpStream::connect(proxy.imap).await.expect("connect");
        let mut r = tokio::io::BufReader::new(tcp);
        let mut line = String::new();
        tokio::time::timeout(CAP, r.read_line(&mut line))
            .await
            .expect("greeting")
            .expect("read");
        if line.starts_with("* OK") {
            break (r, line.trim_end().to_string());
        }
        assert!(std::time::Instant::now() < deadline, "{line}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(g.ends_with("Welcome to the test"), "{g}");
    let second = greeting(proxy.imap).await;
    assert!(second.starts_with("* BYE [UNAVAILABLE]"), "{second}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_only_change_refuses_the_whole_reload() {
    let a = fake(FaultMode::Normal).await;
    let proxy = Proxy::start(&[Back::imap("a", &a, "a.test")], "", "", false).await;
    let before = proxy.shared.runtime().snapshot();
    let settings = proxy.shared.health().settings();
    edit(&proxy, |t| {
        t.replace("listen:\n", "listen:\n  admin: 127.0.0.1:1\n")
            .replace("health:\n", "health:\n    fall: 9\n")
            + "greeting: never shown\n"
    });
    let preview = proxy
        .shared
        .reloader()
        .preview(Trigger::Admin)
        .await
        .expect("a dry run");
    assert_eq!(
        preview.needs_restart.len(),
        1,
        "{:?}",
        preview.needs_restart
    );
    assert!(preview.needs_restart[0].contains("listen.admin"));
    assert!(preview.config_changes.contains(&"health.fall"));
    assert!(preview.config_changes.contains(&"greeting"));
    assert_eq!(
        proxy.shared.runtime().snapshot().generation,
        before.generation,
        "a dry run stores nothing"
    );
    let err = proxy
        .shared
        .reloader()
        .reload(Trigger::Signal)
        .await
        .expect_err("listen.admin needs a restart");
    assert!(matches!(err, ReloadError::NeedsRestart(_)), "{err:?}");
    assert_eq!(err.reason(), "needs_restart");
    let text = err.to_string();
    assert!(text.contains("mailgate.yaml:2: listen.admin"), "{text}");
    assert!(text.contains("needs a restart"), "{text}");
    let after = proxy.shared.runtime().snapshot();
    assert_eq!(after.generation, before.generation, "nothing stored");
    assert_eq!(
        proxy.shared.health().settings(),
        settings,
        "health unchanged"
    );
    assert!(!greeting(proxy.imap).await.contains("never shown"));
    let m = metrics_text(&proxy);
    assert!(
        m.contains("mailgate_config_reloads_refused_total{reason=\"needs_restart\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("mailgate_config_reloads_refused_total{reason=\"tls\"} 0"),
        "every reason exported"
    );

    // A listener address that cannot be bound refuses the reload too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    edit(&proxy, |t| {
        t.replace("  admin: 127.0.0.1:1\n", "")
            .replace("imap: 127.0.0.1:0", &format!("imap: 127.0.0.1:{port}"))
    });
    let err = proxy
        .shared
        .reloader()
        .reload(Trigger::Signal)
        .await
        .expect_err("the port is taken");
    assert_eq!(err.reason(), "listener_bind", "{err}");
    assert!(err.to_string().contains("listen.imap"), "{err}");
    assert_eq!(
        proxy.shared.runtime().snapshot().generation,
        before.generation
    );
    assert!(!greeting(proxy.imap).await.contains("never shown"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_listener_keeps_its_spliced_sessions_and_refuses_new_connections() {
    let a = fake(FaultMode::Normal).await;
    let proxy = Proxy::start(&[Back::imap("a", &a, "a.test")], "", "", false).await;
    let mut spliced = Client::connect(proxy.imap).await;
    let ok = spliced.imap_login("a1", "u@a.test").await;
    assert!(ok.starts_with("a1 OK"), "{ok}");

    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    edit(&proxy, |t| {
        t.replace("imap: 127.0.0.1:0", &format!("imap: 127.0.0.1:{port}"))
    });
    let report = proxy
        .shared
        .reloader()
        .reload(Trigger::Admin)
        .await
        .expect("reload");
    assert_eq!(
        report.listener_changes.len(),
        2,
        "{:?}",
        report.listener_changes
    );
    assert!(report.config_changes.contains(&"listen.imap"));

    // The old listener refuses new connections (eventually: its accept loop ends).
    let deadline = std::time::Instant::now() + CAP;
    loop {
        match TcpStream::connect(proxy.imap).await {
            Err(_) => break,
            Ok(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "old listener still accepts"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // The spliced session it accepted keeps working.
    let noop = spliced.imap("a2", "NOOP").await;
    assert!(noop.starts_with("a2 OK"), "{noop}");
    // The new listener serves.
    let new = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut c = Client::connect(new).await;
    let ok = c.imap_login("b1", "v@a.test").await;
    assert!(ok.starts_with("b1 OK"), "{ok}");
    assert_eq!(
        proxy
            .shared
            .listener_set()
            .addrs()
            .iter()
            .find(|(k, _)| k.name() == "imap")
            .map(|(_, a)| *a),
        Some(new)
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_or_missing_mailgate_yaml_changes_nothing() {
    let a = fake(FaultMode::Normal).await;
    let proxy = Proxy::start(&[Back::imap("a", &a, "a.test")], "", "", false).await;
    let before = proxy.shared.runtime().snapshot();
    let good = std::fs::read_to_string(config_path(&proxy)).expect("read");
    edit(&proxy, |t| {
        t.to_string() + "greeting: new\nlimits_typo: 1\n"
    });
    let err = proxy
        .shared
        .reloader()
        .reload(Trigger::Admin)
        .await
        .expect_err("unknown key");
    assert_eq!(err.reason(), "invalid_config", "{err}");
    assert!(err.to_string().contains("mailgate.yaml"), "{err}");
    std::fs::remove_file(config_path(&proxy)).expect("remove");
    let err = proxy
        .shared
        .reloader()
        .reload(Trigger::Signal)
        .await
        .expect_err("no file");
    assert_eq!(err.reason(), "invalid_config", "{err}");
    assert_eq!(
        proxy.shared.runtime().snapshot().generation,
        before.generation
    );
    assert!(!greeting(proxy.imap).await.ends_with("new"));
    std::fs::write(config_path(&proxy), good).expect("restore");
    proxy
        .shared
        .reloader()
        .reload(Trigger::Admin)
        .await
        .expect("the good file reloads again");
    let m = metrics_text(&proxy);
    assert!(
        m.contains("mailgate_config_reloads_refused_total{reason=\"invalid_config\"} 2"),
        "{m}"
    );
    proxy.stop().await;
}
