//! Pieces for the hand-written `Debug` impls of everything that holds client or backend
//! bytes (engines, framers, actions, credentials). A derived `Debug` of a `Vec<u8>` prints
//! its bytes as a decimal list, which no grep for a password finds, so these types print
//! lengths and states only. docs/security.md: "Secrets stay out of `Debug`".

use std::fmt;

/// Prints `<N bytes>` for a byte string or text whose contents must not be shown.
#[derive(Clone, Copy)]
pub(crate) struct Len(pub(crate) usize);

impl Len {
    /// The length of `bytes`.
    pub(crate) fn of(bytes: impl AsRef<[u8]>) -> Len {
        Len(bytes.as_ref().len())
    }
}

impl fmt::Debug for Len {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

/// Prints `None` or `Some(<N bytes>)`.
pub(crate) fn opt_len<T: AsRef<[u8]>>(v: &Option<T>) -> Option<Len> {
    v.as_ref().map(Len::of)
}

/// Prints at most `max` characters of a text that may be shown but is not bounded by its
/// producer (an ID field a client sent, a capability a backend listed), and how much was
/// cut.
pub(crate) struct Clipped<'a>(pub(crate) &'a str, pub(crate) usize);

impl fmt::Debug for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Clipped(text, max) = *self;
        match text.char_indices().nth(max) {
            None => fmt::Debug::fmt(text, f),
            Some((cut, _)) => {
                fmt::Debug::fmt(&text[..cut], f)?;
                write!(f, "…(+{} bytes)", text.len() - cut)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_clips() {
        assert_eq!(format!("{:?}", Len::of(b"secret")), "<6 bytes>");
        assert_eq!(format!("{:?}", opt_len(&Some("ab"))), "Some(<2 bytes>)");
        assert_eq!(format!("{:?}", opt_len::<&str>(&None)), "None");
        assert_eq!(format!("{:?}", Clipped("abc", 5)), "\"abc\"");
        assert_eq!(format!("{:?}", Clipped("abcdef", 2)), "\"ab\"…(+4 bytes)");
        assert_eq!(format!("{:?}", Clipped("äöü", 1)), "\"ä\"…(+4 bytes)");
    }
}
