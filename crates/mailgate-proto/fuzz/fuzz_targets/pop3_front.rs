//! Fuzz the client-facing POP3 engine. The body and its oracles live in
//! `mailgate_proto::fuzzing::pop3_front`, which the corpus replay test also runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate_proto::fuzzing::pop3_front(data));
