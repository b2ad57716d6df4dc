//! One step of a POP3 AUTH exchange (RFC 5034) on the client side: which challenge to
//! send and what a SASL response line means. The mechanisms themselves live in
//! `crate::sasl`; this module only sequences them.

use super::replies as r;
use crate::login::{Credentials, OAuthMechanism};
use crate::sasl;
use crate::secret::Secret;

/// The SASL response the engine waits for next. `Debug` shows the user name's length only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum SaslStep {
    /// PLAIN: the whole `authzid NUL authcid NUL passwd` message.
    Plain,
    /// LOGIN: the user name.
    LoginUser,
    /// LOGIN: the password for `user`.
    LoginPass { user: String },
    /// XOAUTH2 / OAUTHBEARER: the initial client response.
    OAuth(OAuthMechanism),
}

impl std::fmt::Debug for SaslStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaslStep::Plain => f.write_str("Plain"),
            SaslStep::LoginUser => f.write_str("LoginUser"),
            SaslStep::LoginPass { user } => f
                .debug_struct("LoginPass")
                .field("user", &crate::redact::Len::of(user))
                .finish(),
            SaslStep::OAuth(m) => f.debug_tuple("OAuth").field(m).finish(),
        }
    }
}

/// What one SASL response leads to (`Debug` as [`SaslStep`] and [`Credentials`]).
#[derive(Debug)]
pub(crate) enum StepOutcome {
    /// Send this challenge and wait for the next response.
    Challenge(SaslStep, &'static [u8]),
    /// The exchange is complete: route this login.
    Login(Credentials),
    /// Not base64, wrong shape, bad identity, empty password: `-ERR`, exchange over.
    Invalid,
}

impl SaslStep {
    /// The first step for `AUTH mechanism` (case-insensitive), if it is offered.
    pub(crate) fn for_mechanism(mechanism: &[u8], oauth: bool) -> Option<SaslStep> {
        let is = |name: &str| mechanism.eq_ignore_ascii_case(name.as_bytes());
        if is("PLAIN") {
            Some(SaslStep::Plain)
        } else if is("LOGIN") {
            Some(SaslStep::LoginUser)
        } else if oauth && is("XOAUTH2") {
            Some(SaslStep::OAuth(OAuthMechanism::XOAuth2))
        } else if oauth && is("OAUTHBEARER") {
            Some(SaslStep::OAuth(OAuthMechanism::OAuthBearer))
        } else {
            None
        }
    }

    /// The challenge sent when AUTH came without an initial response.
    pub(crate) fn first_challenge(&self) -> &'static [u8] {
        match self {
            SaslStep::LoginUser => r::SASL_LOGIN_USER,
            SaslStep::LoginPass { .. } => r::SASL_LOGIN_PASS,
            SaslStep::Plain | SaslStep::OAuth(_) => r::SASL_EMPTY_CHALLENGE,
        }
    }
}

/// Consume one base64 response line (`=` is the empty response, RFC 5034 §4).
pub(crate) fn advance(step: SaslStep, line: &[u8]) -> StepOutcome {
    let Ok(decoded) = sasl::decode_base64(line) else {
        return StepOutcome::Invalid;
    };
    let result = match step {
        SaslStep::Plain => sasl::parse_plain(&decoded),
        SaslStep::LoginUser => {
            return match sasl::login_user(&decoded) {
                Ok(user) => {
                    StepOutcome::Challenge(SaslStep::LoginPass { user }, r::SASL_LOGIN_PASS)
                }
                Err(_) => StepOutcome::Invalid,
            };
        }
        SaslStep::LoginPass { user } => Ok(Credentials::Password {
            authzid: None,
            authcid: user,
            password: Secret::new(decoded),
        }),
        SaslStep::OAuth(mechanism) => sasl::parse_oauth(mechanism, &decoded),
    };
    match result {
        Ok(Credentials::Password { password, .. }) if password.is_empty() => StepOutcome::Invalid,
        Ok(credentials) => StepOutcome::Login(credentials),
        Err(_) => StepOutcome::Invalid,
    }
}
