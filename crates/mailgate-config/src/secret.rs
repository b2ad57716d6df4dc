//! A password read from a file: its `Debug` never shows it, so it cannot leak into logs,
//! error texts or `{:?}` dumps of a backend.

use std::fmt;

/// A secret string; call [`Secret::expose`] exactly where it is written to a backend.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(/* REDACTED */)")
    }
}
