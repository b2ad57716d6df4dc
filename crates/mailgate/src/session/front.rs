//! One interface over the IMAP and POP3 client-facing engines, so that the session driver
//! is written once.

use mailgate_proto::imap::{ImapFront, ImapFrontConfig};
use mailgate_proto::pop3::{Pop3Front, Pop3FrontConfig};
use mailgate_proto::{FrontAction, Limits, LoginVerdict};

use crate::protocol::Protocol;

/// Settings that shape the greeting and capabilities of a listener.
#[derive(Debug, Clone)]
pub struct FrontSettings {
    /// Pre-auth limits.
    pub limits: Limits,
    /// STARTTLS/STLS may be offered on this listener.
    pub tls_available: bool,
    /// No login before TLS.
    pub require_tls_for_login: bool,
    /// Greeting text.
    pub greeting: String,
    /// Advertise and accept XOAUTH2 / OAUTHBEARER.
    pub oauth: bool,
}

/// The client-facing engine of one session.
#[derive(Debug)]
pub enum Front {
    /// IMAP.
    Imap(Box<ImapFront>),
    /// POP3.
    Pop3(Box<Pop3Front>),
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
    /// A new engine for `protocol`.
    pub fn new(protocol: Protocol, s: &FrontSettings, tls_active: bool) -> Front {
        match protocol {
            Protocol::Imap => Front::Imap(Box::new(ImapFront::new(
                ImapFrontConfig {
                    limits: s.limits.clone(),
                    tls_available: s.tls_available,
                    require_tls_for_login: s.require_tls_for_login,
                    oauth: s.oauth,
                    greeting_text: s.greeting.clone(),
                },
                tls_active,
            ))),
            Protocol::Pop3 => Front::Pop3(Box::new(Pop3Front::new(
                Pop3FrontConfig {
                    limits: s.limits.clone(),
                    tls_available: s.tls_available,
                    require_tls_for_login: s.require_tls_for_login,
                    oauth: s.oauth,
                    greeting_text: s.greeting.clone(),
                },
                tls_active,
            ))),
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
