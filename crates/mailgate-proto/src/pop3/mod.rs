//! POP3 pre-auth: the client-facing engine and the backend login relay.

mod framing;
mod front;
mod replies;
mod response;
mod sasl_step;
mod upstream;
mod xclient;

pub use front::Pop3Front;
pub use upstream::Pop3Upstream;
