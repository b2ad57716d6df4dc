//! Sans-I/O pre-auth protocol engines for mailgate.
//!
//! Nothing in this crate performs I/O. The session driver feeds bytes as they arrive
//! (in any split) into an engine and asks it for its next action. There are four engines:
//!
//! | engine | side | module |
//! |---|---|---|
//! | [`imap::ImapFront`] | mailgate acting as IMAP server towards the client | `imap::front` |
//! | [`imap::ImapUpstream`] | mailgate replaying the login towards an IMAP backend | `imap::upstream` |
//! | [`pop3::Pop3Front`] | mailgate acting as POP3 server towards the client | `pop3::front` |
//! | [`pop3::Pop3Upstream`] | mailgate replaying the login towards a POP3 backend | `pop3::upstream` |
//!
//! Front engines yield [`FrontAction`]s; upstream engines yield [`UpstreamAction`]s. Both
//! return `None` from `next_action` when they need more bytes.
#![forbid(unsafe_code)]

pub mod action;
pub mod capability;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod imap;
pub mod limits;
pub mod login;
pub mod notices;
pub mod pop3;
pub mod protocol;
mod redact;
pub mod sasl;
pub mod secret;
pub mod verdict;

pub use action::{CloseReason, FrontAction, LoginVerdict, UpstreamAction, UpstreamError};
pub use capability::{Advertised, CapaRead, Capabilities, Mechanism, read_pop3_capa};
pub use config::{DEFAULT_GREETING, FrontConfig, UpstreamConfig};
pub use limits::Limits;
pub use login::{ClientAddr, Credentials, ForwardInfo, LoginRequest, OAuthMechanism};
pub use protocol::Protocol;
pub use secret::Secret;
pub use verdict::{Refusal, TempScope};
