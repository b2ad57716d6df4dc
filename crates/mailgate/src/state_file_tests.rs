//! The state file: round trip, atomic replacement, broken and missing files.

use std::time::{Duration, SystemTime};

use mailgate_health::{BackendSpec, DrainNote, HealthSettings, HealthView};

use super::*;

fn view(names: &[&str]) -> HealthView {
    let v = HealthView::new(HealthSettings::default());
    v.set_backends(names.iter().map(|n| BackendSpec::new(*n)));
    v
}

#[test]
fn encode_decode_round_trip() {
    let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_590_400);
    let drains = vec![
        (
            "mail1".to_string(),
            DrainNote {
                reason: Some("ticket \"42\"\nsecond line".into()),
                since: Some(since),
            },
        ),
        ("mail2".to_string(), DrainNote::default()),
    ];
    let text = encode(&drains);
    assert!(text.contains("\"format\": 1"), "{text}");
    assert_eq!(decode(&text, Path::new("s")).expect("decode"), drains);
    let empty: serde_json::Value = serde_json::from_str(&encode(&[])).expect("json");
    assert_eq!(empty, serde_json::json!({"format": 1, "drained": []}));
}

#[test]
fn broken_contents_are_refused_with_the_file_name() {
    for text in [
        "",
        "{",
        "null",
        "[]",
        "{\"drained\": []}",
        "{\"format\": 2, \"drained\": []}",
        "{\"format\": 1, \"drained\": [{\"reason\": \"no backend\"}]}",
        "{\"format\": 1, \"drained\": [{\"backend\": 7}]}",
    ] {
        let e = decode(text, Path::new("/var/lib/mailgate/state.json")).expect_err(text);
        assert!(
            e.to_string().starts_with("/var/lib/mailgate/state.json: "),
            "{e}"
        );
    }
}

#[test]
fn save_then_open_restores_the_local_drains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let health = view(&["mail1", "mail2"]);
    let store = DrainStore::open(Some(path.clone()), &health);
    assert!(store.problem().is_none(), "a missing file is a first start");
    assert!(health.drain_local("mail2", Some("disk swap".into())));
    assert!(store.save().expect("save"));
    // Nothing but the file itself is left in the directory (the temporary is renamed).
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["state.json"]);

    // A restart: a new view from the routing file, then the state file.
    let again = view(&["mail1", "mail2"]);
    let store = DrainStore::open(Some(path.clone()), &again);
    assert!(store.problem().is_none());
    let st = again.snapshot();
    assert!(!st[0].drained);
    assert!(st[1].drained);
    let local = st[1].drains.local.as_ref().expect("local drain");
    assert_eq!(local.reason.as_deref(), Some("disk swap"));
    assert!(local.since.is_some());

    // Undrain is written too.
    assert!(again.undrain("mail2"));
    assert!(store.save().expect("save"));
    let third = view(&["mail1", "mail2"]);
    DrainStore::open(Some(path), &third);
    assert!(third.local_drains().is_empty());
}

#[test]
fn a_broken_file_is_reported_and_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    std::fs::write(&path, "{\"format\": 1, \"drained\": [").expect("write");
    let health = view(&["mail1"]);
    let store = DrainStore::open(Some(path.clone()), &health);
    let problem = store.problem().expect("reported");
    assert!(problem.contains("state.json") && problem.contains("not a mailgate state file"));
    assert!(health.local_drains().is_empty());
    // The next change rewrites it, and the problem is gone.
    assert!(health.drain("mail1"));
    assert!(store.save().expect("save"));
    assert!(store.problem().is_none());
    assert_eq!(read(&path).expect("read").expect("exists").len(), 1);
}

#[test]
fn a_backend_the_routing_file_lost_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let drains = vec![("gone".to_string(), DrainNote::default())];
    std::fs::write(&path, encode(&drains)).expect("write");
    let health = view(&["mail1"]);
    let store = DrainStore::open(Some(path), &health);
    assert!(store.problem().is_none());
    assert!(health.local_drains().is_empty());
}

#[test]
fn a_failed_write_keeps_the_drain_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The parent is a file: nothing can be created below it.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").expect("write");
    let health = view(&["mail1"]);
    let store = DrainStore::open(Some(blocker.join("state.json")), &health);
    assert!(store.problem().is_some(), "not readable either: reported");
    assert!(health.drain("mail1"));
    assert!(store.save().is_err());
    assert!(store.problem().expect("problem").starts_with("writing: "));
    assert!(health.snapshot()[0].drained, "the drain holds in memory");
}

#[test]
fn without_a_state_file_nothing_is_written() {
    let health = view(&["mail1"]);
    let store = DrainStore::open(None, &health);
    assert!(health.drain("mail1"));
    assert!(!store.save().expect("no file, no error"));
    assert!(store.path().is_none());
}
