//! mailgate acting as IMAP server towards the client, until the login is relayed.

use crate::action::{FrontAction, LoginVerdict};
use crate::limits::Limits;

/// Configuration of the client-facing IMAP engine.
#[derive(Debug, Clone)]
pub struct ImapFrontConfig {
    /// Limits.
    pub limits: Limits,
    /// STARTTLS can be offered (a certificate is configured and TLS is not active yet).
    pub tls_available: bool,
    /// No LOGIN/AUTHENTICATE before TLS (`LOGINDISABLED`, `NO [PRIVACYREQUIRED]`).
    pub require_tls_for_login: bool,
    /// Advertise and accept XOAUTH2 / OAUTHBEARER.
    pub oauth: bool,
    /// Greeting text after `* OK [CAPABILITY ...] `.
    pub greeting_text: String,
}

impl Default for ImapFrontConfig {
    fn default() -> Self {
        ImapFrontConfig {
            limits: Limits::default(),
            tls_available: true,
            require_tls_for_login: true,
            oauth: false,
            greeting_text: "mailgate ready.".into(),
        }
    }
}

/// The client-facing IMAP engine.
#[derive(Debug)]
pub struct ImapFront {
    _config: ImapFrontConfig,
}

impl ImapFront {
    /// A new engine; `tls_active` is true on implicit-TLS listeners.
    pub fn new(config: ImapFrontConfig, tls_active: bool) -> Self {
        let _ = tls_active;
        ImapFront { _config: config }
    }

    /// The greeting, `* OK [CAPABILITY ...] text\r\n`.
    pub fn greeting(&self) -> Vec<u8> {
        todo!("issue #2")
    }

    /// Append bytes read from the client.
    pub fn feed(&mut self, data: &[u8]) {
        let _ = data;
        todo!("issue #2")
    }

    /// The next action, or `None` when more bytes are needed (or a login is in flight).
    pub fn next_action(&mut self) -> Option<FrontAction> {
        todo!("issue #2")
    }

    /// The TLS handshake after STARTTLS completed.
    pub fn tls_started(&mut self) {
        todo!("issue #2")
    }

    /// Report the outcome of the login the engine asked for. Returns the bytes to send
    /// to the client. After `Accepted` the engine is finished: call `into_remaining()`.
    pub fn login_result(&mut self, verdict: LoginVerdict) -> Vec<u8> {
        let _ = verdict;
        todo!("issue #2")
    }

    /// ID fields the client sent (forwarded to the backend).
    pub fn client_id(&self) -> &[(String, Option<String>)] {
        todo!("issue #2")
    }

    /// Bytes the client sent after its login command (pipelined); forwarded to the
    /// backend unchanged once spliced.
    pub fn into_remaining(self) -> Vec<u8> {
        todo!("issue #2")
    }

    /// `* BYE [UNAVAILABLE] ...` for shutdown.
    pub fn shutdown_bye(&self) -> Vec<u8> {
        todo!("issue #2")
    }

    /// `* BYE ...` when the pre-auth deadline expired.
    pub fn timeout_bye(&self) -> Vec<u8> {
        todo!("issue #2")
    }
}
