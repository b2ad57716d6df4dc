//! Fast fake backends and load generators for mailgate's tests and benchmarks.
#![forbid(unsafe_code)]
