//! Fast fake backends and load generators for mailgate's tests and benchmarks.
//!
//! - [`fake`]: scriptable in-process IMAP/POP3 fake backends with fault modes.
//! - [`client`]: the minimal IMAP client the load generator drives (plain, STARTTLS,
//!   implicit TLS).
#![forbid(unsafe_code)]

pub mod client;
pub mod fake;
