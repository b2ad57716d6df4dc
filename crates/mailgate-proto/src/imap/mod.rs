//! IMAP pre-auth: the client-facing engine and the backend login relay.

mod auth;
mod boundary;
mod caps;
mod command;
#[cfg(test)]
mod differential;
mod encode;
mod framer;
mod front;
mod lexer;
mod response;
mod upstream;

pub use boundary::ResponseBoundary;
pub use front::ImapFront;

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
pub use upstream::ImapUpstream;
