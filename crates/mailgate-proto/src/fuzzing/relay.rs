//! What the relay targets share: the backend's script and the credentials it expects.

use super::*;

/// How the scripted, well-behaved backend of a relay target behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Script {
    /// Accept the login (else refuse the credentials).
    pub(crate) accept: bool,
    /// IMAP: SASL-IR; POP3: `USER` in CAPA.
    pub(crate) sasl_ir: bool,
    /// IMAP: capabilities in the greeting (else only on CAPABILITY).
    pub(crate) caps_in_greeting: bool,
    /// IMAP: `ID`; POP3: `XCLIENT`.
    pub(crate) forwarding: bool,
    /// STARTTLS / STLS towards the backend.
    pub(crate) starttls: bool,
    /// POP3: `PIPELINING` in CAPA (the relay then queues XCLIENT, USER and PASS at once).
    pub(crate) pipelining: bool,
}

impl Script {
    pub(crate) fn from_byte(b: u8) -> Script {
        Script {
            accept: b & 0x01 != 0,
            sasl_ir: b & 0x02 != 0,
            caps_in_greeting: b & 0x04 != 0,
            forwarding: b & 0x08 != 0,
            starttls: b & 0x10 != 0,
            pipelining: b & 0x20 != 0,
        }
    }
}

/// What the backend must receive for `login`.
#[derive(Debug)]
pub(crate) enum Expected<'a> {
    /// IMAP LOGIN / POP3 USER+PASS (or AUTH PLAIN without authzid).
    Password {
        authcid: &'a str,
        password: &'a [u8],
    },
    /// SASL PLAIN with an authorization identity.
    Plain(Vec<u8>),
    /// XOAUTH2 / OAUTHBEARER: the initial response unchanged.
    OAuth(&'static str, &'a [u8]),
}

pub(crate) fn expected(login: &LoginRequest) -> Expected<'_> {
    match &login.credentials {
        Credentials::Password {
            authzid: None,
            authcid,
            password,
        } => Expected::Password {
            authcid,
            password: password.expose(),
        },
        Credentials::Password {
            authzid: Some(z),
            authcid,
            password,
        } => {
            let mut plain = z.as_bytes().to_vec();
            plain.push(0);
            plain.extend_from_slice(authcid.as_bytes());
            plain.push(0);
            plain.extend_from_slice(password.expose());
            Expected::Plain(plain)
        }
        Credentials::OAuth {
            mechanism,
            initial_response,
            ..
        } => Expected::OAuth(mechanism.name(), initial_response.expose()),
    }
}

/// Check a SASL response the backend received against the credentials.
pub(crate) fn check_sasl(expected: &Expected<'_>, mechanism: &[u8], b64: &[u8]) {
    let decoded = if b64 == b"=" {
        Vec::new()
    } else {
        match STANDARD.decode(b64) {
            Ok(d) => d,
            Err(_) => panic!("the relay sent a SASL response that is not base64"),
        }
    };
    match expected {
        Expected::Plain(plain) => {
            assert!(mechanism.eq_ignore_ascii_case(b"PLAIN"), "wrong mechanism");
            assert!(
                decoded == *plain,
                "SASL PLAIN does not carry the client's credentials"
            );
        }
        Expected::OAuth(name, token) => {
            assert!(
                mechanism.eq_ignore_ascii_case(name.as_bytes()),
                "wrong mechanism"
            );
            assert!(
                decoded == *token,
                "the OAuth token was not relayed unchanged"
            );
        }
        Expected::Password { authcid, password } => {
            // POP3 carries a password login that USER/PASS cannot as AUTH PLAIN.
            assert!(mechanism.eq_ignore_ascii_case(b"PLAIN"), "wrong mechanism");
            let mut plain = vec![0];
            plain.extend_from_slice(authcid.as_bytes());
            plain.push(0);
            plain.extend_from_slice(password);
            assert!(
                decoded == plain,
                "SASL PLAIN does not carry the client's credentials"
            );
        }
    }
}

pub(crate) fn relay_failed(e: UpstreamError) -> ! {
    panic!("a client's login drove the relay to a backend fault: {e}");
}

pub(crate) fn check_relay_verdict(verdict: &LoginVerdict, accept: bool) {
    match verdict {
        LoginVerdict::Accepted(_) => assert!(accept, "accepted a login the backend refused"),
        LoginVerdict::Rejected(_) => assert!(!accept, "refused a login the backend accepted"),
        _ => panic!("a client's login produced a backend-fault verdict"),
    }
}
