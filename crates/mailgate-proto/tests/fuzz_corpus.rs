//! Replays every committed seed of every fuzz target (crates/mailgate-proto/fuzz/corpus/)
//! through the same function the fuzz target calls, with the same oracles, so a
//! regression seed fails `cargo test` without a fuzzer.

use std::path::PathBuf;

use mailgate_proto::fuzzing;

/// Run every file in `fuzz/corpus/<target>/` through `body`; at least one must exist.
fn replay(target: &str, body: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("read seed");
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(
            outcome.is_ok(),
            "{target}: seed {} fails its oracle",
            file.display()
        );
    }
    eprintln!("{target}: {} seeds replayed", files.len());
}

#[test]
fn imap_front_corpus() {
    replay("imap_front", fuzzing::imap_front);
}

#[test]
fn pop3_front_corpus() {
    replay("pop3_front", fuzzing::pop3_front);
}

#[test]
fn imap_upstream_corpus() {
    replay("imap_upstream", fuzzing::imap_upstream);
}

#[test]
fn pop3_upstream_corpus() {
    replay("pop3_upstream", fuzzing::pop3_upstream);
}

#[test]
fn imap_relay_corpus() {
    replay("imap_relay", fuzzing::imap_relay);
}

#[test]
fn pop3_relay_corpus() {
    replay("pop3_relay", fuzzing::pop3_relay);
}
