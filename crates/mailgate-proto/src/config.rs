//! Configuration shared by the IMAP and POP3 engines: the client-facing engines
//! ([`FrontConfig`]) and the backend login relays ([`UpstreamConfig`]) take the same settings
//! in both protocols.

use crate::capability::Advertised;
use crate::limits::Limits;
use crate::login::ForwardInfo;

/// Configuration of a client-facing engine (`ImapFront`, `Pop3Front`).
#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// Limits.
    pub limits: Limits,
    /// STARTTLS/STLS can be offered (a certificate is configured and TLS is not active yet).
    pub tls_available: bool,
    /// No login before TLS: IMAP `LOGINDISABLED` and `NO [PRIVACYREQUIRED]`; POP3 no
    /// USER/SASL in CAPA and `-ERR` to USER/AUTH.
    pub require_tls_for_login: bool,
    /// Accept XOAUTH2 / OAUTHBEARER (the upper bound: they are advertised only where
    /// `advertised` offers them too).
    pub oauth: bool,
    /// What every backend a login can reach supports: SASL-IR, ID and the mechanisms
    /// offered before login ([`Advertised::default`] offers everything).
    pub advertised: Advertised,
    /// Greeting text after `* OK [CAPABILITY ...] ` / `+OK `.
    pub greeting_text: String,
}

/// The greeting text when `greeting:` is not set: neutral, no product or version.
pub const DEFAULT_GREETING: &str = "mailgate ready.";

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            limits: Limits::default(),
            tls_available: true,
            require_tls_for_login: true,
            oauth: false,
            advertised: Advertised::default(),
            greeting_text: DEFAULT_GREETING.into(),
        }
    }
}

/// Configuration of one login relay towards a backend (`ImapUpstream`, `Pop3Upstream`).
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Limits (upstream_* apply).
    pub limits: Limits,
    /// Issue STARTTLS / STLS after the greeting (backend `tls: starttls`).
    pub starttls: bool,
    /// Forward the client's address before the login (backend `forward_client: id`): IMAP
    /// `ID` with these fields; POP3 `XCLIENT ADDR= PORT=` when the backend advertises it.
    pub forward: Option<ForwardInfo>,
}
