//! mailgate configuration and routing table (issue #3).
#![forbid(unsafe_code)]
