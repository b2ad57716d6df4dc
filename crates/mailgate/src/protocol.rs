//! Which mail protocol a listener or backend connection speaks.

/// IMAP or POP3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// IMAP4rev1.
    Imap,
    /// POP3.
    Pop3,
}

impl Protocol {
    /// Lowercase name (`imap`, `pop3`), used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
        }
    }
}
