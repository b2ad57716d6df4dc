//! Replays every committed seed of the `routing` and `routing_fast` fuzz targets
//! (crates/mailgate/fuzz/corpus/<target>/) through the function the target calls, with the
//! same oracles.

use std::path::PathBuf;

#[test]
fn routing_corpus() {
    replay("routing", mailgate_config::fuzzing::routing);
}

#[test]
fn routing_fast_corpus() {
    replay("routing_fast", mailgate_config::fuzzing::routing_fast);
}

fn replay(target: &str, body: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../mailgate/fuzz/corpus")
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
        assert!(outcome.is_ok(), "seed {} fails its oracle", file.display());
    }
    eprintln!("{target}: {} seeds replayed", files.len());
}
