//! The one reloader, in-process: a bad routing file changes nothing and names the file and
//! key; concurrent requests (admin, SIGHUP, file changes alike) run one at a time and
//! coalesce: requests that arrive while a reload runs join the one queued after it, every
//! waiter gets the result of a reload that started after its request, and the last file
//! wins.

mod common;

use common::{Back, Proxy, fake};
use mailgate::reload::Trigger;
use mailgate_testkit::fake::FaultMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_file_changes_nothing_and_reloads_are_serialised() {
    let a = fake(FaultMode::Normal).await;
    let b = fake(FaultMode::Normal).await;
    let proxy = Proxy::start(
        &[Back::imap("a", &a, "a.test"), Back::imap("b", &b, "b.test")],
        "",
        "",
        false,
    )
    .await;
    let path = proxy._dir.path().join("routing.yaml");
    let good = std::fs::read_to_string(&path).expect("read");
    let runtime = proxy.shared.runtime().clone();
    let before = runtime.snapshot();

    std::fs::write(&path, good.replace("b.test: b", "b.test: nope")).expect("write");
    let err = proxy
        .shared
        .reloader()
        .reload(Trigger::Admin)
        .await
        .expect_err("unknown backend");
    let text = err.to_string();
    assert!(text.contains("routing.yaml"), "names the file: {text}");
    assert!(text.contains("nope"), "names the bad value: {text}");
    let after = runtime.snapshot();
    assert_eq!(after.generation, before.generation, "nothing was stored");
    assert!(std::sync::Arc::ptr_eq(&after.routing, &before.routing));

    // Ten concurrent requests while the file alternates (replaced by rename, as editors
    // and Kubernetes do): they coalesce into at most two whole reloads (the first, and
    // one for all that arrived while it ran), each of which stores one snapshot.
    let moved = good.replace("b.test: b", "b.test: a");
    let tmp = path.with_extension("tmp");
    let replace = |text: &str| {
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
    };
    let mut tasks = Vec::new();
    for i in 0..10 {
        replace(if i % 2 == 0 { &moved } else { &good });
        let r = proxy.shared.reloader().clone();
        tasks.push(tokio::spawn(async move { r.reload(Trigger::Signal).await }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.expect("join").expect("reload").routing_version);
    }
    let reloads = runtime.snapshot().generation - before.generation;
    assert!(
        (1..=2).contains(&reloads),
        "{reloads} reloads for 10 requests"
    );
    assert_eq!(
        versions.last(),
        Some(&runtime.snapshot().routing.version_hex()),
        "the last request's answer is the table in force"
    );
    let settled = runtime.snapshot().generation;
    replace(&moved);
    let report = proxy
        .shared
        .reloader()
        .reload(Trigger::FileChange)
        .await
        .expect("reload");
    let last = runtime.snapshot();
    assert_eq!(last.generation, settled + 1);
    assert_eq!(report.routing_version, last.routing.version_hex());
    let route = last.routing.lookup("x@b.test").expect("route");
    assert_eq!(
        route.backend.name, "a",
        "the file in force is the one last read"
    );
    proxy.stop().await;
}
