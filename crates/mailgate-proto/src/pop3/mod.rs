//! POP3 pre-auth: the client-facing engine and the backend login relay.

mod front;
mod upstream;

pub use front::{Pop3Front, Pop3FrontConfig};
pub use upstream::{Pop3Upstream, Pop3UpstreamConfig};
