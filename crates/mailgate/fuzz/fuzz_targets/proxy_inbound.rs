//! Fuzz the inbound PROXY header, v1 and v2 as mailgate tells them apart. The body and its
//! oracles live in `mailgate::fuzzing::proxy_inbound`, which the corpus replay test also runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::proxy_inbound(data));
