//! IMAP pre-auth: the client-facing engine and the backend login relay.

mod front;
mod upstream;

pub use front::{ImapFront, ImapFrontConfig};
pub use upstream::{ImapUpstream, ImapUpstreamConfig};
