//! Fuzz the IMAP login relay against a hostile backend. The body and its oracles live in
//! `mailgate_proto::fuzzing::imap_upstream`, which the corpus replay test also runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate_proto::fuzzing::imap_upstream(data));
