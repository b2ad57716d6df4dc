//! SASL helpers shared by IMAP and POP3: base64 framing, PLAIN (RFC 4616), LOGIN,
//! XOAUTH2 and OAUTHBEARER (RFC 7628) user extraction.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::login::{Credentials, OAuthMechanism};
use crate::secret::Secret;

/// Why a SASL exchange failed (never carries the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Not valid base64.
    #[error("invalid base64")]
    Base64,
    /// Decoded payload has the wrong shape.
    #[error("malformed SASL message")]
    Malformed,
    /// An identity is not UTF-8, has control characters, or is too long.
    #[error("invalid identity")]
    Identity,
}

/// Longest identity accepted (RFC 5321 address limit plus room).
pub const MAX_IDENTITY: usize = 255;

/// Decode one base64 line (no CRLF). `=` is the empty response (RFC 4959 / RFC 5034).
pub fn decode_base64(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    if line == b"=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(line).map_err(|_| SaslError::Base64)
}

/// Encode bytes as one base64 line; the empty string becomes `=`.
pub fn encode_base64(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return b"=".to_vec();
    }
    STANDARD.encode(data).into_bytes()
}

fn identity(bytes: &[u8]) -> Result<String, SaslError> {
    if bytes.len() > MAX_IDENTITY {
        return Err(SaslError::Identity);
    }
    let s = std::str::from_utf8(bytes).map_err(|_| SaslError::Identity)?;
    if s.chars().any(char::is_control) {
        return Err(SaslError::Identity);
    }
    Ok(s.to_string())
}

/// Parse a decoded PLAIN message `authzid NUL authcid NUL passwd`.
pub fn parse_plain(decoded: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = decoded.splitn(3, |b| *b == 0);
    let (Some(authzid), Some(authcid), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if password.contains(&0) || authcid.is_empty() {
        return Err(SaslError::Malformed);
    }
    let authzid = identity(authzid)?;
    Ok(Credentials::Password {
        authzid: (!authzid.is_empty()).then_some(authzid),
        authcid: identity(authcid)?,
        password: Secret::new(password),
    })
}

/// Encode a PLAIN message (not yet base64).
pub fn encode_plain(authzid: Option<&str>, authcid: &str, password: &Secret) -> Secret {
    let mut out = Vec::with_capacity(authcid.len() * 2 + password.len() + 2);
    out.extend_from_slice(authzid.unwrap_or("").as_bytes());
    out.push(0);
    out.extend_from_slice(authcid.as_bytes());
    out.push(0);
    out.extend_from_slice(password.expose());
    Secret::new(out)
}

/// Validate a decoded SASL LOGIN user name.
pub fn login_user(decoded: &[u8]) -> Result<String, SaslError> {
    if decoded.is_empty() {
        return Err(SaslError::Malformed);
    }
    identity(decoded)
}

/// Parse an XOAUTH2 (`user=U^Aauth=Bearer T^A^A`) or OAUTHBEARER
/// (`n,a=U,^Ahost=..^Aauth=Bearer T^A^A`) initial response; keeps it opaque for replay.
pub fn parse_oauth(mechanism: OAuthMechanism, decoded: &[u8]) -> Result<Credentials, SaslError> {
    let user = match mechanism {
        OAuthMechanism::XOAuth2 => {
            let first = decoded.split(|b| *b == 1).next().unwrap_or_default();
            first.strip_prefix(b"user=").ok_or(SaslError::Malformed)?
        }
        OAuthMechanism::OAuthBearer => {
            let gs2 = decoded.split(|b| *b == 1).next().unwrap_or_default();
            let mut fields = gs2.split(|b| *b == b',');
            let _cbind = fields.next().ok_or(SaslError::Malformed)?;
            let authz = fields.next().ok_or(SaslError::Malformed)?;
            authz.strip_prefix(b"a=").ok_or(SaslError::Malformed)?
        }
    };
    if !decoded.windows(5).any(|w| w.eq_ignore_ascii_case(b"auth=")) {
        return Err(SaslError::Malformed);
    }
    // RFC 5801 saslname: "=2C" is ',' and "=3D" is '='.
    let user = String::from_utf8_lossy(user)
        .replace("=2C", ",")
        .replace("=3D", "=");
    if user.is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok(Credentials::OAuth {
        mechanism,
        user: identity(user.as_bytes())?,
        initial_response: Secret::new(decoded),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_known_answers() {
        let c = parse_plain(b"\0alice@example.com\0pw").expect("valid");
        assert_eq!(
            c,
            Credentials::Password {
                authzid: None,
                authcid: "alice@example.com".into(),
                password: Secret::new("pw")
            }
        );
        let c = parse_plain(b"bob@example.org\0admin@example.com\0pw").expect("valid");
        match c {
            Credentials::Password {
                authzid, authcid, ..
            } => {
                assert_eq!(authzid.as_deref(), Some("bob@example.org"));
                assert_eq!(authcid, "admin@example.com");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(parse_plain(b"no-nuls"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"\0\0pw"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"\0u\0p\0x"), Err(SaslError::Malformed));
        assert_eq!(parse_plain(b"\0u\x07\0p"), Err(SaslError::Identity));
    }

    #[test]
    fn plain_roundtrip() {
        let s = encode_plain(Some("z"), "u", &Secret::new("p"));
        assert_eq!(s.expose(), b"z\0u\0p");
        let b = encode_base64(s.expose());
        assert_eq!(decode_base64(&b).expect("b64"), b"z\0u\0p");
        assert_eq!(decode_base64(b"=").expect("empty"), b"");
        assert_eq!(encode_base64(b""), b"=");
        assert_eq!(decode_base64(b"***"), Err(SaslError::Base64));
    }

    #[test]
    fn oauth_users() {
        let x = parse_oauth(
            OAuthMechanism::XOAuth2,
            b"user=alice@example.com\x01auth=Bearer tok\x01\x01",
        )
        .expect("xoauth2");
        assert!(matches!(x, Credentials::OAuth { ref user, .. } if user == "alice@example.com"));
        let o = parse_oauth(
            OAuthMechanism::OAuthBearer,
            b"n,a=bob@example.org,\x01host=x\x01auth=Bearer tok\x01\x01",
        )
        .expect("oauthbearer");
        assert!(matches!(o, Credentials::OAuth { ref user, .. } if user == "bob@example.org"));
        assert!(parse_oauth(OAuthMechanism::XOAuth2, b"auth=Bearer x\x01\x01").is_err());
        assert!(parse_oauth(OAuthMechanism::OAuthBearer, b"n,,\x01auth=Bearer x").is_err());
    }
}
