//! Fuzz the POP3 login relay against a hostile backend. The body and its oracles live in
//! `mailgate_proto::fuzzing::pop3_upstream`, which the corpus replay test also runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate_proto::fuzzing::pop3_upstream(data));
