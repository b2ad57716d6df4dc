//! Replays every committed seed of the `routing` fuzz target (crates/mailgate/fuzz/corpus/
//! routing/) through the function the target calls, with the same oracles.

use std::path::PathBuf;

#[test]
fn routing_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mailgate/fuzz/corpus/routing");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    for file in &files {
        let data = std::fs::read(file).expect("read seed");
        let outcome = std::panic::catch_unwind(|| mailgate_config::fuzzing::routing(&data));
        assert!(outcome.is_ok(), "seed {} fails its oracle", file.display());
    }
    eprintln!("routing: {} seeds replayed", files.len());
}
