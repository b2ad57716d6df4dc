//! Fuzz client bytes through the POP3 front engine and the login relay to a
//! well-behaved backend. The body and its oracles live in
//! `mailgate_proto::fuzzing::pop3_relay`, which the corpus replay test also runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate_proto::fuzzing::pop3_relay(data));
