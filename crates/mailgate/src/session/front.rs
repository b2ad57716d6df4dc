//! One interface over the IMAP and POP3 client-facing engines, so that the session driver
//! is written once.

use mailgate_proto::FrontConfig;
use mailgate_proto::imap::ImapFront;
use mailgate_proto::pop3::Pop3Front;
use mailgate_proto::{FrontAction, LoginVerdict};

use mailgate_proto::Protocol;

/// The client-facing engine of one session. `Debug` is the engine's, which shows states
/// and lengths, never the client's bytes.
pub enum Front {
    /// IMAP.
    Imap(Box<ImapFront>),
    /// POP3.
    Pop3(Box<Pop3Front>),
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Front::Imap(e) => f.debug_tuple("Imap").field(e).finish(),
            Front::Pop3(e) => f.debug_tuple("Pop3").field(e).finish(),
        }
    }
}

macro_rules! both {
    ($self:expr, $e:ident => $body:expr) => {
        match $self {
            Front::Imap($e) => $body,
            Front::Pop3($e) => $body,
        }
    };
}

impl Front {
    /// A new engine for `protocol`; the listener decides the configuration.
    pub fn new(protocol: Protocol, config: FrontConfig, tls_active: bool) -> Front {
        match protocol {
            Protocol::Imap => Front::Imap(Box::new(ImapFront::new(config, tls_active))),
            Protocol::Pop3 => Front::Pop3(Box::new(Pop3Front::new(config, tls_active))),
        }
    }

    /// The greeting.
    pub fn greeting(&self) -> Vec<u8> {
        both!(self, f => f.greeting())
    }

    /// Bytes from the client.
    pub fn feed(&mut self, data: &[u8]) {
        both!(self, f => f.feed(data))
    }

    /// The next action.
    pub fn next_action(&mut self) -> Option<FrontAction> {
        both!(self, f => f.next_action())
    }

    /// TLS is now active.
    pub fn tls_started(&mut self) {
        both!(self, f => f.tls_started())
    }

    /// The login outcome; returns the bytes for the client.
    pub fn login_result(&mut self, verdict: LoginVerdict) -> Vec<u8> {
        both!(self, f => f.login_result(verdict))
    }

    /// Bytes the client pipelined after its login.
    pub fn into_remaining(self) -> Vec<u8> {
        both!(self, f => f.into_remaining())
    }

    /// Goodbye at shutdown.
    pub fn shutdown_bye(&self) -> Vec<u8> {
        both!(self, f => f.shutdown_bye())
    }

    /// Goodbye at the pre-auth deadline.
    pub fn timeout_bye(&self) -> Vec<u8> {
        both!(self, f => f.timeout_bye())
    }

    /// ID fields the client sent (IMAP only).
    pub fn client_id(&self) -> Vec<(String, Option<String>)> {
        match self {
            Front::Imap(f) => f.client_id().to_vec(),
            Front::Pop3(_) => Vec::new(),
        }
    }
}
