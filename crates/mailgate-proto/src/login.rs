//! What a client asked to log in with, and what mailgate forwards about the client.

use std::fmt;

use crate::redact::{Clipped, Len, opt_len};
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
///
/// `Debug` shows the mechanism and the lengths of the identities, never their text (a
/// client may type its password into the user field), and never the secret.
#[derive(Clone, PartialEq, Eq)]
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

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Password {
                authzid,
                authcid,
                password,
            } => f
                .debug_struct("Password")
                .field("authzid", &opt_len(authzid))
                .field("authcid", &Len::of(authcid))
                .field("password", password)
                .finish(),
            Credentials::OAuth {
                mechanism,
                user,
                initial_response,
            } => f
                .debug_struct("OAuth")
                .field("mechanism", mechanism)
                .field("user", &Len::of(user))
                .field("initial_response", initial_response)
                .finish(),
        }
    }
}

/// A login the front engine wants routed and relayed. `Debug` as [`Credentials`].
#[derive(Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// The credentials to replay.
    pub credentials: Credentials,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl LoginRequest {
    /// The identity to route on: the authorization identity when PLAIN carried one,
    /// otherwise the login name (or the token's user for OAuth). A login name in Dovecot's
    /// master-user form (`user*master`) is split by the routing table, which knows the
    /// separator (`RoutingTable::route_identity`).
    pub fn routing_user(&self) -> &str {
        self.authzid().unwrap_or_else(|| self.login_name())
    }

    /// The SASL PLAIN authorization identity, when the client gave a non-empty one.
    pub fn authzid(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::Password {
                authzid: Some(z), ..
            } if !z.is_empty() => Some(z),
            _ => None,
        }
    }

    /// The name the client authenticates as: IMAP LOGIN / POP3 USER / SASL authcid (a
    /// master user's own name, or `user*master`), or the OAuth token's user.
    pub fn login_name(&self) -> &str {
        match &self.credentials {
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

/// The hop count a fresh client connection starts with: Dovecot's default proxy TTL
/// (`LOGIN_PROXY_TTL`). mailgate is the edge, so nothing in front of it can vouch for a
/// smaller one; a client's own `x-proxy-ttl` is never believed. The backend is told one
/// less ([`ForwardInfo::forwarded_ttl`]), exactly like a Dovecot proxy tells its backends.
pub const PROXY_TTL: u32 = 5;

/// What mailgate tells the backend about the client (IMAP `ID`, POP3 `XCLIENT`).
///
/// Every field but `client_id` is mailgate's own knowledge of the session; only those
/// reach the backend under the names a backend trusts from its proxy (`x-originating-*`,
/// `x-connected-*`, `x-session-id`, `x-proxy-ttl`, `x-client-transport`, XCLIENT `ADDR`,
/// `PORT`, `DESTADDR`, `DESTPORT`, `SESSION`, `TTL`, `CLIENT-TRANSPORT`). What the client
/// itself put in its `ID` is forwarded only for the RFC 2971 field names
/// ([`CLIENT_ID_FIELDS`]).
///
/// `Debug` shows the addresses and the session id, and of the client's own ID fields
/// (its own choice, so no one else's secret, but unbounded for `Debug`'s purposes) at
/// most the first 8, clipped.
#[derive(Clone, PartialEq, Eq)]
pub struct ForwardInfo {
    /// The client's address (x-originating-ip/port).
    pub client: ClientAddr,
    /// The local address the client connected to (x-connected-ip/port).
    pub connected: ClientAddr,
    /// mailgate's session id (x-session-id).
    pub session_id: String,
    /// The client's connection to mailgate is TLS (implicit, or after STARTTLS/STLS) at
    /// the time of the login: `x-client-transport` is `TLS`, otherwise `insecure`.
    pub client_tls: bool,
    /// The hop count this session arrived with ([`PROXY_TTL`]); the backend is told one
    /// less.
    pub proxy_ttl: u32,
    /// ID fields the client itself sent (name/value; value `None` is NIL). Only the
    /// RFC 2971 names in [`CLIENT_ID_FIELDS`] are forwarded.
    pub client_id: Vec<(String, Option<String>)>,
}

impl ForwardInfo {
    /// The TTL told to the backend: one hop less than this session arrived with.
    pub fn forwarded_ttl(&self) -> u32 {
        self.proxy_ttl.saturating_sub(1)
    }

    /// The `x-client-transport` / `CLIENT-TRANSPORT` value (Dovecot's words).
    pub fn client_transport(&self) -> &'static str {
        if self.client_tls { "TLS" } else { "insecure" }
    }
}

/// The client `ID` field names forwarded to a backend: those RFC 2971 §3.3 defines. Any
/// other name — every `x-*` above all — stays with mailgate, because a backend trusts
/// `x-*` fields from its proxy (Dovecot turns `x-forward-*` into passdb fields).
pub const CLIENT_ID_FIELDS: [&str; 11] = [
    "name",
    "version",
    "os",
    "os-version",
    "vendor",
    "support-url",
    "address",
    "date",
    "command",
    "arguments",
    "environment",
];

impl fmt::Debug for ForwardInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Fields<'a>(&'a [(String, Option<String>)]);
        impl fmt::Debug for Fields<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut l = f.debug_list();
                for (name, value) in self.0.iter().take(8) {
                    l.entry(&(Clipped(name, 32), value.as_deref().map(|v| Clipped(v, 64))));
                }
                if self.0.len() > 8 {
                    l.entry(&format_args!("…{} more", self.0.len() - 8));
                }
                l.finish()
            }
        }
        f.debug_struct("ForwardInfo")
            .field("client", &self.client)
            .field("connected", &self.connected)
            .field("session_id", &Clipped(&self.session_id, 64))
            .field("client_id", &Fields(&self.client_id))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(authzid: Option<&str>, authcid: &str) -> LoginRequest {
        LoginRequest {
            credentials: Credentials::Password {
                authzid: authzid.map(str::to_string),
                authcid: authcid.into(),
                password: Secret::new("pw"),
            },
        }
    }

    #[test]
    fn identities_of_every_login_form() {
        // PLAIN with an authzid: the mailbox is the authzid, the master authenticates.
        let r = password(Some("bob@example.org"), "admin");
        assert_eq!(r.authzid(), Some("bob@example.org"));
        assert_eq!(r.login_name(), "admin");
        assert_eq!(r.routing_user(), "bob@example.org");
        // An empty authzid is none.
        let r = password(Some(""), "bob@example.org");
        assert_eq!(r.authzid(), None);
        assert_eq!(r.routing_user(), "bob@example.org");
        // LOGIN user*master: one name; the routing table splits it.
        let r = password(None, "bob@example.org*admin");
        assert_eq!(r.authzid(), None);
        assert_eq!(r.login_name(), "bob@example.org*admin");
        let r = LoginRequest {
            credentials: Credentials::OAuth {
                mechanism: OAuthMechanism::XOAuth2,
                user: "carol@example.net".into(),
                initial_response: Secret::new("token"),
            },
        };
        assert_eq!((r.authzid(), r.login_name()), (None, "carol@example.net"));
    }
}
