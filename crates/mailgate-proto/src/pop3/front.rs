//! mailgate acting as POP3 server towards the client, until the login is relayed.

use crate::action::{FrontAction, LoginVerdict};
use crate::limits::Limits;

/// Configuration of the client-facing POP3 engine.
#[derive(Debug, Clone)]
pub struct Pop3FrontConfig {
    /// Limits.
    pub limits: Limits,
    /// STARTTLS can be offered (a certificate is configured and TLS is not active yet).
    pub tls_available: bool,
    /// No LOGIN/AUTHENTICATE before TLS (no USER/SASL in CAPA, `-ERR` to USER/AUTH).
    pub require_tls_for_login: bool,
    /// Advertise and accept XOAUTH2 / OAUTHBEARER.
    pub oauth: bool,
    /// Greeting text after `* OK [CAPABILITY ...] `.
    pub greeting_text: String,
}

impl Default for Pop3FrontConfig {
    fn default() -> Self {
        Pop3FrontConfig {
            limits: Limits::default(),
            tls_available: true,
            require_tls_for_login: true,
            oauth: false,
            greeting_text: "mailgate ready.".into(),
        }
    }
}

/// The client-facing POP3 engine.
#[derive(Debug)]
pub struct Pop3Front {
    _config: Pop3FrontConfig,
}

impl Pop3Front {
    /// A new engine; `tls_active` is true on implicit-TLS listeners.
    pub fn new(config: Pop3FrontConfig, tls_active: bool) -> Self {
        let _ = tls_active;
        Pop3Front { _config: config }
    }

    /// The greeting, `+OK text\r\n`.
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

    /// Bytes the client sent after its login command (pipelined); forwarded to the
    /// backend unchanged once spliced.
    pub fn into_remaining(self) -> Vec<u8> {
        todo!("issue #2")
    }

    /// `-ERR [SYS/TEMP] ...` for shutdown.
    pub fn shutdown_bye(&self) -> Vec<u8> {
        todo!("issue #2")
    }

    /// `-ERR ...` when the pre-auth deadline expired.
    pub fn timeout_bye(&self) -> Vec<u8> {
        todo!("issue #2")
    }
}
