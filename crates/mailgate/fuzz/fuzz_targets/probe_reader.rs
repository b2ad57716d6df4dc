//! Fuzz the probe conversation against a backend's bytes. The body and its oracles live in
//! `mailgate_health::fuzzing::probe_reader`, which the corpus replay test also runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate_health::fuzzing::probe_reader(data));
