//! The texts mailgate sends outside a login conversation: refusing a connection before
//! the greeting, and the `* BYE` before it ends a spliced IMAP session itself. Every
//! protocol text lives in this crate; the server only chooses which to send.

use crate::protocol::Protocol;

/// The backend message when a backend sets no `unavailable_message`.
pub const DEFAULT_UNAVAILABLE: &str = "Mail server temporarily unavailable, please try again later";

/// Why a connection is refused before its greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// `limits.max_sessions_per_ip` reached for the client's address.
    TooManyFromAddress,
    /// A process-wide cap (connections, sessions before login) is reached.
    ServerBusy,
}

/// The one line sent before closing a refused connection: IMAP `* BYE [UNAVAILABLE]`,
/// POP3 `-ERR [SYS/TEMP]` (temporary: try again later).
pub fn connection_refused(protocol: Protocol, why: ConnectionRefusal) -> &'static [u8] {
    match (protocol, why) {
        (Protocol::Imap, ConnectionRefusal::TooManyFromAddress) => {
            b"* BYE [UNAVAILABLE] Too many connections from your address\r\n"
        }
        (Protocol::Pop3, ConnectionRefusal::TooManyFromAddress) => {
            b"-ERR [SYS/TEMP] Too many connections from your address\r\n"
        }
        (Protocol::Imap, ConnectionRefusal::ServerBusy) => {
            b"* BYE [UNAVAILABLE] Server busy, please try again later\r\n"
        }
        (Protocol::Pop3, ConnectionRefusal::ServerBusy) => {
            b"-ERR [SYS/TEMP] Server busy, please try again later\r\n"
        }
    }
}

/// Why mailgate itself ends a spliced IMAP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplicedEnd {
    /// An operator kick, or a routing change that moved the mailbox.
    Kicked,
    /// The end of the shutdown grace.
    Shutdown,
    /// Nothing moved for the idle limit.
    Idle,
}

/// The `* BYE [UNAVAILABLE] ...` mailgate sends, at a response boundary, before it closes
/// a spliced session itself, so the client knows to reconnect rather than guess.
pub fn spliced_bye(why: SplicedEnd) -> &'static [u8] {
    match why {
        SplicedEnd::Kicked => b"* BYE [UNAVAILABLE] Session moved, please reconnect.\r\n",
        SplicedEnd::Shutdown => b"* BYE [UNAVAILABLE] Server shutting down, please reconnect.\r\n",
        SplicedEnd::Idle => b"* BYE Autologout; idle for too long.\r\n",
    }
}
