//! mailgate test kit: fast fake backends and load tools for tests and benchmarks.
//!
//! - [`fake`]: scriptable in-process IMAP/POP3 fake backends with fault modes.
//! - [`client`]: the minimal IMAP client the load generator drives (plain, STARTTLS,
//!   implicit TLS).
#![forbid(unsafe_code)]

pub mod client;
pub mod fake;
