//! The four public endpoints — IMAP (143), IMAPS (993), POP3 (110), POP3S (995): which
//! protocol each speaks and whether TLS starts with the first byte.

use mailgate_proto::Protocol;

/// Which public listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// IMAP, plaintext with STARTTLS.
    Imap,
    /// IMAP over implicit TLS.
    Imaps,
    /// POP3, plaintext with STLS.
    Pop3,
    /// POP3 over implicit TLS.
    Pop3s,
}

impl ListenerKind {
    /// All kinds.
    pub const ALL: [ListenerKind; 4] = [
        ListenerKind::Imap,
        ListenerKind::Imaps,
        ListenerKind::Pop3,
        ListenerKind::Pop3s,
    ];

    /// Config key / metric label.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Imap => "imap",
            ListenerKind::Imaps => "imaps",
            ListenerKind::Pop3 => "pop3",
            ListenerKind::Pop3s => "pop3s",
        }
    }

    /// The protocol spoken.
    pub fn protocol(self) -> Protocol {
        match self {
            ListenerKind::Imap | ListenerKind::Imaps => Protocol::Imap,
            ListenerKind::Pop3 | ListenerKind::Pop3s => Protocol::Pop3,
        }
    }

    /// TLS from the first byte.
    pub fn implicit_tls(self) -> bool {
        matches!(self, ListenerKind::Imaps | ListenerKind::Pop3s)
    }
}
