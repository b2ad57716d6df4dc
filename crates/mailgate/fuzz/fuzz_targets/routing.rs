//! Fuzz the routing file and name normalisation. The body and its oracles live in
//! `mailgate_config::fuzzing::routing`, which the corpus replay test also runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate_config::fuzzing::routing(data));
