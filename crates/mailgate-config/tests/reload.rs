//! Reload: valid swap with a diff, invalid file kept out, and the directory watcher for
//! in-place writes, rename-over and Kubernetes-style `..data` symlink swaps.
mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use common::Dir;
use mailgate_config::{Move, RoutingTable};

const V1: &str = "backends:\n  m1:\n    host: h1\n    imap_port: 143\n  m2:\n    host: h2\n    imap_port: 143\ndomains:\n  a.test: m1\n  b.test: m2\nusers:\n  u@a.test: m2\ndefault: m1\n";
const V2: &str = "backends:\n  m1:\n    host: h1\n    imap_port: 143\n  m2:\n    host: h2b\n    imap_port: 143\n  m3:\n    host: h3\n    imap_port: 143\ndomains:\n  a.test: m2\n  b.test: m2\n  c.test: m3\nusers:\n  u@a.test: m2\n  v@b.test: m1\ndefault: m1\n";

fn mv(key: &str, old: &str, new: &str) -> Move {
    Move {
        key: key.into(),
        old: Some(old.into()),
        new: Some(new.into()),
    }
}

/// The diff's paths without new keys (every key of the newer table is an old one) and with
/// them give the same moves as looking every key up in both tables.
#[test]
fn diff_with_and_without_new_domains() {
    let d = Dir::new();
    let t = |text: &str| d.load(text).expect("valid").table;
    let head = "backends:\n  m1: {host: h1, imap_port: 143}\n  m2: {host: h2, imap_port: 143}\n";
    let old = t(&format!(
        "{head}domains:\n  a.test: m1\n  b.test: m2\n  c.test: m1\n  \"*.w.test\": m2\ndefault: m1\n"
    ));
    // Moved, removed (falls to the default: no move), removed (falls to the wildcard), none new.
    let fewer = t(&format!(
        "{head}domains:\n  a.test: m2\n  \"*.w.test\": m2\n  \"*.test\": m2\ndefault: m1\n"
    ));
    let diff = old.diff(&fewer);
    assert_eq!(
        diff.domains,
        vec![
            Move {
                key: "*.test".into(),
                old: Some("m1".into()),
                new: Some("m2".into())
            },
            mv("a.test", "m1", "m2"),
            mv("c.test", "m1", "m2"),
        ]
    );
    // The other way round every key is new or moved back.
    let back = fewer.diff(&old);
    assert_eq!(
        back.domains,
        vec![
            Move {
                key: "*.test".into(),
                old: Some("m2".into()),
                new: Some("m1".into())
            },
            mv("a.test", "m2", "m1"),
            mv("c.test", "m2", "m1"),
        ]
    );
    assert!(old.diff(&old).is_empty());
}

#[test]
fn valid_swap_reports_diff_and_invalid_changes_nothing() {
    let d = Dir::new();
    let path = d.write("routing.yaml", V1);
    let before = Arc::new(RoutingTable::load(&path).expect("v1").table);
    assert_eq!(
        before
            .lookup("x@a.test")
            .map(|r| r.backend.name.clone())
            .as_deref(),
        Some("m1")
    );

    d.write("routing.yaml", V2);
    let after = Arc::new(RoutingTable::load(&path).expect("v2").table);
    assert_ne!(after.version(), before.version());
    let diff = &before.diff(&after);
    assert_eq!(
        diff.domains,
        vec![mv("a.test", "m1", "m2"), mv("c.test", "m1", "m3")]
    );
    assert_eq!(diff.users, vec![mv("v@b.test", "m2", "m1")]);
    assert_eq!(diff.backends_added, vec!["m3".to_string()]);
    assert_eq!(diff.backends_changed.len(), 1);
    assert!(diff.backends_changed[0].address_changed());
    // The old snapshot is untouched: a session keeps the table it started with.
    assert_eq!(
        before
            .lookup("x@a.test")
            .map(|r| r.backend.name.clone())
            .as_deref(),
        Some("m1")
    );
    assert!(before.route_changed(&after, "x@a.test"));
    assert!(!before.route_changed(&after, "u@a.test"));

    for bad in [
        "",
        "backends:\n  m1:\n    host: h1\n    imap_po",
        "backends:\n  m1:\n    host: h\n    imap_port: 1\ndomains:\n  a.test: nope\n",
    ] {
        d.write("routing.yaml", bad);
        let err = RoutingTable::load(&path).expect_err("invalid");
        assert!(!err.0.is_empty());
    }
    // Same content again: the same version (the reloader keeps the table in force).
    d.write("routing.yaml", V2);
    assert_eq!(
        RoutingTable::load(&path).expect("v2").table.version(),
        after.version()
    );
}

#[test]
fn a_changed_master_user_separator_is_in_the_diff() {
    let d = Dir::new();
    let path = d.write("routing.yaml", V1);
    let before = table_of(&path);
    d.write(
        "routing.yaml",
        &format!("master_user_separator: \"%\"\n{V1}"),
    );
    let pct = table_of(&path);
    d.write(
        "routing.yaml",
        &format!("master_user_separator: \"\"\n{V1}"),
    );
    let off = table_of(&path);

    let diff = before.diff(&pct);
    assert_eq!(diff.master_user_separator, Some((Some('*'), Some('%'))));
    assert!(!diff.is_empty());
    assert!(!diff.routes_moved(), "no live session moves");
    assert!(
        diff.to_string()
            .contains("master_user_separator: '*' -> '%'")
    );
    let diff = pct.diff(&off);
    assert_eq!(diff.master_user_separator, Some((Some('%'), None)));
    assert!(
        diff.to_string()
            .contains("master_user_separator: '%' -> (off)")
    );
    assert_eq!(
        before.diff(&table_of(&path)).master_user_separator,
        Some((Some('*'), None))
    );
    assert!(before.diff(&before).master_user_separator.is_none());
}

fn table_of(path: &std::path::Path) -> RoutingTable {
    RoutingTable::load(path).expect("valid").table
}

fn wait(rx: &mpsc::Receiver<()>) -> bool {
    rx.recv_timeout(Duration::from_secs(10)).is_ok()
}

fn drain(rx: &mpsc::Receiver<()>) {
    std::thread::sleep(Duration::from_millis(300));
    while rx.try_recv().is_ok() {}
}

#[test]
fn watcher_sees_in_place_write_and_rename_over() {
    let d = Dir::new();
    let path = d.write("routing.yaml", V1);
    let (tx, rx) = mpsc::channel();
    let (seen_tx, seen_rx) = mpsc::channel();
    let _w = mailgate_config::watch_with(&path, Duration::from_millis(50), move |seen| {
        let _ = seen_tx.send(seen);
        let _ = tx.send(());
    })
    .expect("watch");
    drain(&rx);
    while seen_rx.try_recv().is_ok() {}
    let before_write = std::time::Instant::now();
    std::fs::write(&path, V2).expect("write");
    assert!(wait(&rx), "in-place write not seen");
    // The instant passed is when the watcher saw the write: after it began, and well
    // before the debounced callback (a reload started after it has read the new bytes).
    let seen = seen_rx.try_recv().expect("seen");
    assert!(seen >= before_write, "seen before the write");
    assert!(seen <= std::time::Instant::now());
    assert_eq!(table_of(&path).backends().count(), 3);
    drain(&rx);
    let tmp = d.write(".routing.yaml.swp", V1);
    std::fs::rename(&tmp, &path).expect("rename");
    assert!(wait(&rx), "rename-over not seen");
    assert_eq!(table_of(&path).backends().count(), 2);
    drain(&rx);
    // Unrelated files in the same directory do not trigger.
    d.write("other.txt", "x");
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    // Nor does reading the file (inotify reports opens): a reload reads it, and a reload
    // that asked for the next one would never stop.
    let _ = table_of(&path);
    let _ = std::fs::read(&path).expect("read");
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "a read was taken for a change"
    );
}

#[cfg(unix)]
#[test]
fn watcher_sees_configmap_symlink_swap() {
    use std::os::unix::fs::symlink;
    let d = Dir::new();
    let root = d.dir.path();
    // Kubernetes layout: routing.yaml -> ..data/routing.yaml, ..data -> ..2024_01
    std::fs::create_dir(root.join("..v1")).expect("mkdir");
    std::fs::write(root.join("..v1/routing.yaml"), V1).expect("write");
    symlink("..v1", root.join("..data")).expect("symlink");
    symlink("..data/routing.yaml", root.join("routing.yaml")).expect("symlink");
    std::fs::write(root.join("probe.secret"), "x").expect("write");
    let path = root.join("routing.yaml");
    let routing = Arc::new(std::sync::Mutex::new(table_of(&path)));
    let (tx, rx) = mpsc::channel();
    let r2 = routing.clone();
    let p2 = path.clone();
    let _w = mailgate_config::watch_with(&path, Duration::from_millis(50), move |_| {
        if let Ok(l) = RoutingTable::load(&p2) {
            *r2.lock().expect("lock") = l.table;
        }
        let _ = tx.send(());
    })
    .expect("watch");
    drain(&rx);
    std::fs::create_dir(root.join("..v2")).expect("mkdir");
    std::fs::write(root.join("..v2/routing.yaml"), V2).expect("write");
    symlink("..v2", root.join("..data_tmp")).expect("symlink");
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while routing.lock().expect("lock").backends().count() != 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "symlink swap not picked up"
        );
        let _ = rx.recv_timeout(Duration::from_millis(200));
    }
}
