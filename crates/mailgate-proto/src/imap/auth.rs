//! The SASL exchanges of IMAP `AUTHENTICATE` (RFC 3501 §6.2.2, RFC 4959 SASL-IR): which
//! continuation request to send and what each client response means. Payload decoding
//! lives in [`crate::sasl`]; this module only sequences the steps.

use std::fmt;

use crate::login::{Credentials, OAuthMechanism};
use crate::redact::Len;
use crate::sasl::{self, SaslError};
use crate::secret::Secret;

/// Where an `AUTHENTICATE` exchange stands. `Debug` shows the user name's length only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// PLAIN: waiting for `authzid NUL authcid NUL passwd`.
    Plain,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password of this user.
    LoginPassword(String),
    /// XOAUTH2 / OAUTHBEARER: waiting for the initial client response.
    OAuth(OAuthMechanism),
}

/// What a client response leads to. `Debug` as [`Step`] and [`Credentials`].
#[derive(PartialEq, Eq)]
pub(crate) enum Next {
    /// Send the step's continuation request and wait.
    More(Step),
    /// The exchange is complete.
    Done(Credentials),
}

impl Step {
    /// The first step of `mechanism` (upper-case), if mailgate offers it.
    pub(crate) fn start(mechanism: &str, oauth: bool) -> Option<Step> {
        match mechanism {
            "PLAIN" => Some(Step::Plain),
            "LOGIN" => Some(Step::LoginUser),
            "XOAUTH2" if oauth => Some(Step::OAuth(OAuthMechanism::XOAuth2)),
            "OAUTHBEARER" if oauth => Some(Step::OAuth(OAuthMechanism::OAuthBearer)),
            _ => None,
        }
    }

    /// The continuation request for this step (`+ ` and base64 challenge, CRLF included).
    /// LOGIN asks "Username:" and "Password:" like Dovecot and Cyrus do.
    pub(crate) fn challenge(&self) -> &'static [u8] {
        match self {
            Step::LoginUser => b"+ VXNlcm5hbWU6\r\n",
            Step::LoginPassword(_) => b"+ UGFzc3dvcmQ6\r\n",
            Step::Plain | Step::OAuth(_) => b"+ \r\n",
        }
    }

    /// Consume one decoded client response.
    pub(crate) fn respond(self, decoded: Vec<u8>) -> Result<Next, SaslError> {
        match self {
            Step::Plain => sasl::parse_plain(&decoded).map(Next::Done),
            Step::LoginUser => {
                sasl::login_user(&decoded).map(|u| Next::More(Step::LoginPassword(u)))
            }
            Step::LoginPassword(user) => {
                if decoded.contains(&0) {
                    return Err(SaslError::Malformed);
                }
                Ok(Next::Done(Credentials::Password {
                    authzid: None,
                    authcid: user,
                    password: Secret::new(decoded),
                }))
            }
            Step::OAuth(m) => sasl::parse_oauth(m, &decoded).map(Next::Done),
        }
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Plain => f.write_str("Plain"),
            Step::LoginUser => f.write_str("LoginUser"),
            Step::LoginPassword(user) => f
                .debug_tuple("LoginPassword")
                .field(&Len::of(user))
                .finish(),
            Step::OAuth(m) => f.debug_tuple("OAuth").field(m).finish(),
        }
    }
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Next::More(step) => f.debug_tuple("More").field(step).finish(),
            Next::Done(c) => f.debug_tuple("Done").field(c).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_sequence() {
        let s = Step::start("LOGIN", false).expect("offered");
        assert_eq!(s.challenge(), b"+ VXNlcm5hbWU6\r\n");
        let Ok(Next::More(s)) = s.respond(b"alice".to_vec()) else {
            panic!("user step")
        };
        assert_eq!(s.challenge(), b"+ UGFzc3dvcmQ6\r\n");
        let Ok(Next::Done(c)) = s.respond(b"pw".to_vec()) else {
            panic!("password step")
        };
        assert!(matches!(c, Credentials::Password { ref authcid, .. } if authcid == "alice"));
        assert_eq!(Step::start("XOAUTH2", false), None);
        assert_eq!(Step::start("CRAM-MD5", true), None);
    }
}
