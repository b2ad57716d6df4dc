//! mailgate backend health (issue #5).
#![forbid(unsafe_code)]
