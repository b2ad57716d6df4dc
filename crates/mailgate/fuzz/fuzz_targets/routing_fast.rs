//! Fuzz the routing file's `domains:` fast path against the full YAML parser: wherever the
//! fast path takes a file, table, warnings and errors must equal the full parser's. The
//! body lives in `mailgate_config::fuzzing::routing_fast`, which the corpus replay test
//! also runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate_config::fuzzing::routing_fast(data));
