//! Fuzz the admin request's path, query and bearer token. The body and its oracles live in
//! `mailgate::fuzzing::admin_request`, which the corpus replay test also runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::admin_request(data));
