//! What a client asked to log in with, and what mailgate forwards about the client.

use crate::secret::Secret;

/// The OAuth SASL mechanisms mailgate passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthMechanism {
    /// Google/Microsoft `XOAUTH2`.
    XOAuth2,
    /// RFC 7628 `OAUTHBEARER`.
    OAuthBearer,
}

impl OAuthMechanism {
    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            OAuthMechanism::XOAuth2 => "XOAUTH2",
            OAuthMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// Credentials as the client presented them; replayed to the backend re-serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// IMAP LOGIN, POP3 USER/PASS, SASL PLAIN and LOGIN.
    Password {
        /// SASL PLAIN authorization identity, if the client gave a non-empty one.
        authzid: Option<String>,
        /// Authentication identity (the login name).
        authcid: String,
        /// The password.
        password: Secret,
    },
    /// XOAUTH2 / OAUTHBEARER: the user named in the token; the token kept opaque.
    OAuth {
        /// Which mechanism the client used.
        mechanism: OAuthMechanism,
        /// `user=` / `a=` field of the initial response.
        user: String,
        /// The complete decoded initial response, replayed unchanged.
        initial_response: Secret,
    },
}

/// A login the front engine wants routed and relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// The credentials to replay.
    pub credentials: Credentials,
}

impl LoginRequest {
    /// The identity to route on: the authorization identity when PLAIN carried one,
    /// otherwise the login name (or the token's user for OAuth).
    pub fn routing_user(&self) -> &str {
        match &self.credentials {
            Credentials::Password {
                authzid: Some(z), ..
            } if !z.is_empty() => z,
            Credentials::Password { authcid, .. } => authcid,
            Credentials::OAuth { user, .. } => user,
        }
    }
}

/// An address and port (already formatted, IPv6 without brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr {
    /// IP address as text.
    pub ip: String,
    /// Port.
    pub port: u16,
}

/// What mailgate tells the backend about the client (IMAP `ID`, POP3 `XCLIENT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardInfo {
    /// The client's address (x-originating-ip/port).
    pub client: ClientAddr,
    /// The local address the client connected to (x-connected-ip/port).
    pub connected: ClientAddr,
    /// mailgate's session id (x-session-id).
    pub session_id: String,
    /// ID fields the client itself sent (name/value; value `None` is NIL), forwarded too.
    pub client_id: Vec<(String, Option<String>)>,
}
