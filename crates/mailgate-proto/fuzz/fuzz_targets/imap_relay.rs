//! Fuzz client bytes through the IMAP front engine and the login relay to a
//! well-behaved backend. The body and its oracles live in
//! `mailgate_proto::fuzzing::imap_relay`, which the corpus replay test also runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate_proto::fuzzing::imap_relay(data));
