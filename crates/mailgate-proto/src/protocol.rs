//! Which mail protocol an engine, listener, backend port or probe speaks.

use std::fmt;

/// IMAP or POP3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// IMAP4rev1 (also over implicit TLS).
    Imap,
    /// POP3 (also over implicit TLS).
    Pop3,
}

impl Protocol {
    /// Lower-case name for logs and metric labels (`imap`, `pop3`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
