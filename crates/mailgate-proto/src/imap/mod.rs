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

pub use upstream::ImapUpstream;
