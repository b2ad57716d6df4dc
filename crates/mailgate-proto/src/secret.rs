//! A byte string that must never be printed: passwords, tokens, SASL payloads.

use std::fmt;

/// Secret bytes. `Debug` and `Display` print a redaction marker; the bytes are handed out
/// only through [`Secret::expose`], which the upstream encoders call when they write the
/// login to the backend.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wrap secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The secret bytes. Call this only where the secret is written to a backend.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes (safe to log).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("/* REDACTED */")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("/* REDACTED */")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_bytes() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "/* REDACTED */");
        assert_eq!(format!("{s}"), "/* REDACTED */");
        assert_eq!(s.expose(), b"hunter2");
    }
}
