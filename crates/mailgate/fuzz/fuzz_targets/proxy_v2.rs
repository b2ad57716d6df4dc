//! Fuzz the inbound PROXY protocol v2 header. The body and its oracles live in
//! `mailgate::fuzzing::proxy_v2`, which the corpus replay test also runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::proxy_v2(data));
