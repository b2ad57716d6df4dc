//! mailgate acting as POP3 client towards a backend: greeting, CAPA, optional STLS,
//! XCLIENT forwarding, the login replay re-serialized, and the verdict.

use crate::action::UpstreamAction;
use crate::action::UpstreamError;
use crate::limits::Limits;
use crate::login::{ForwardInfo, LoginRequest};

/// Configuration of one login relay towards an POP3 backend.
#[derive(Debug, Clone)]
pub struct Pop3UpstreamConfig {
    /// Limits (upstream_* apply).
    pub limits: Limits,
    /// Issue STLS after the greeting (backend `tls: starttls`).
    pub starttls: bool,
    /// Send `XCLIENT ADDR= PORT=` before the login when the backend advertises it (backend `forward_client: id`).
    pub forward: Option<ForwardInfo>,
}

/// The backend-facing POP3 login relay.
#[derive(Debug)]
pub struct Pop3Upstream {
    _config: Pop3UpstreamConfig,
}

impl Pop3Upstream {
    /// A relay for `login`, starting before the backend's greeting.
    pub fn new(config: Pop3UpstreamConfig, login: LoginRequest) -> Self {
        let _ = login;
        Pop3Upstream { _config: config }
    }

    /// Append bytes read from the backend.
    pub fn feed(&mut self, data: &[u8]) {
        let _ = data;
        todo!("issue #2")
    }

    /// The next action, `Ok(None)` when more bytes are needed.
    pub fn next_action(&mut self) -> Result<Option<UpstreamAction>, UpstreamError> {
        todo!("issue #2")
    }

    /// The TLS handshake after STARTTLS completed.
    pub fn tls_started(&mut self) {
        todo!("issue #2")
    }

    /// Bytes the backend sent after its verdict (passed to the client once spliced).
    pub fn into_remaining(self) -> Vec<u8> {
        todo!("issue #2")
    }
}
