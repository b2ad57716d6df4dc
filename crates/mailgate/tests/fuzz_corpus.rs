//! Replays every committed seed of the server's fuzz targets (crates/mailgate/fuzz/corpus/
//! proxy_v2/, proxy_inbound/ and admin_request/) through the functions the targets call, with the same
//! oracles. The `routing` and `probe_reader` seeds are replayed by mailgate-config's and
//! mailgate-health's own fuzz_corpus tests.

use std::path::PathBuf;

use mailgate::fuzzing;

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
fn proxy_v2_corpus() {
    replay("proxy_v2", fuzzing::proxy_v2);
}

#[test]
fn proxy_inbound_corpus() {
    replay("proxy_inbound", fuzzing::proxy_inbound);
}

#[test]
fn admin_request_corpus() {
    replay("admin_request", fuzzing::admin_request);
}
