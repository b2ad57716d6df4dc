//! The old process's side of a binary upgrade, in-process: once a new process took over
//! (`Lifecycle::begin_handover`) the accept loops stop, but a session still in pre-auth is
//! not told BYE — it logs in and is spliced — and spliced sessions go on until the
//! shutdown that ends the drain closes them with a BYE. (That the upgrade grace replaces
//! `shutdown_grace` is shown end to end by tests/e2e/test_hitless_upgrade.py.)

mod common;

use std::time::{Duration, Instant};

use common::{Back, CAP, Client, Proxy, fake};
use mailgate_testkit::fake::FaultMode;

#[tokio::test]
async fn handover_stops_accepting_and_lets_every_session_finish_its_way() {
    let f = fake(FaultMode::Normal).await;
    let proxy = Proxy::start_with_config_extra(
        &[Back::imap("b1", &f, "example.com")],
        "shutdown_close_window: 1s\n",
    )
    .await;
    let mut spliced = Client::connect(proxy.imap).await;
    let reply = spliced.imap_login("a1", "alice@example.com").await;
    assert!(reply.starts_with("a1 OK"), "{reply:?}");
    let mut preauth = Client::connect(proxy.imap).await;

    let lifecycle = proxy.shared.lifecycle();
    lifecycle.begin_handover();
    assert!(lifecycle.is_handed_over() && !lifecycle.is_shutting_down());

    // The accept loop let go of its listener: nothing accepts on it any more.
    let deadline = Instant::now() + CAP;
    while tokio::net::TcpStream::connect(proxy.imap).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting after the hand-over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The pre-auth session was not told BYE: it logs in here, and both sessions work.
    let reply = preauth.imap_login("b1", "bob@example.com").await;
    assert!(reply.starts_with("b1 OK"), "{reply:?}");
    for (c, tag) in [(&mut spliced, "a2"), (&mut preauth, "b2")] {
        let reply = c.imap(tag, "NOOP").await;
        assert!(reply.starts_with(&format!("{tag} OK")), "{reply:?}");
    }

    // The drain ends: the sessions are closed by mailgate, each with a BYE.
    let stopped = Instant::now();
    let stop = tokio::spawn(proxy.stop());
    for mut c in [spliced, preauth] {
        let rest = c
            .read_to_end(Duration::from_secs(20))
            .await
            .expect("closed after the grace and the close window");
        let text = String::from_utf8_lossy(&rest);
        assert!(text.contains("* BYE"), "closed without a BYE: {text:?}");
    }
    assert!(stopped.elapsed() < Duration::from_secs(20));
    stop.await.expect("proxy stopped");
}
