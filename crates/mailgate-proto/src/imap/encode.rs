//! Encoding the login replay and the forwarding `ID` towards a backend.
//!
//! Credentials are re-serialized from their parsed form, never copied from client
//! bytes: a string goes out quoted when that is safe (printable ASCII), otherwise as a
//! synchronizing literal, so the relay waits for the backend's `+` between segments.
//! This is the one place where [`Secret::expose`](crate::Secret::expose) is called.

use super::lexer::{push_quoted, quotable};
use crate::login::{CLIENT_ID_FIELDS, Credentials, ForwardInfo, LoginRequest, OAuthMechanism};
use crate::sasl;

/// RFC 2971 §3.3: at most 30 pairs, values ≤ 1024 octets (names ≤ 30 octets: every
/// name mailgate sends is its own or one of the allow-list's).
const ID_MAX_PAIRS: usize = 30;
const ID_MAX_VALUE: usize = 1024;

/// The answer to a backend challenge after the whole login was sent: OAuth servers send
/// an error challenge and expect a dummy response before their tagged `NO` — empty for
/// XOAUTH2, `%x01` for OAUTHBEARER (RFC 7628 §3.2.3). Other logins get none.
pub(crate) fn challenge_answer(login: &LoginRequest) -> Option<&'static [u8]> {
    match login.credentials {
        Credentials::OAuth {
            mechanism: OAuthMechanism::XOAuth2,
            ..
        } => Some(b"\r\n"),
        Credentials::OAuth {
            mechanism: OAuthMechanism::OAuthBearer,
            ..
        } => Some(b"AQ==\r\n"),
        Credentials::Password { .. } => None,
    }
}

/// Append an astring to `cur`; a literal ends the current segment (the backend's `+`
/// must be awaited before the data).
fn push_astring(segments: &mut Vec<Vec<u8>>, cur: &mut Vec<u8>, s: &[u8]) {
    if quotable(s) {
        push_quoted(cur, s);
    } else {
        cur.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        segments.push(std::mem::take(cur));
        cur.extend_from_slice(s);
    }
}

/// The login command for `tag`, split into segments: the first is sent at once, every
/// further one after a `+` continuation request from the backend.
pub(crate) fn login(tag: &[u8], login: &LoginRequest, sasl_ir: bool) -> Vec<Vec<u8>> {
    let mut segments = Vec::new();
    let mut cur = tag.to_vec();
    let (mechanism, payload) = match &login.credentials {
        Credentials::Password {
            authzid: None,
            authcid,
            password,
        } => {
            cur.extend_from_slice(b" LOGIN ");
            push_astring(&mut segments, &mut cur, authcid.as_bytes());
            cur.push(b' ');
            push_astring(&mut segments, &mut cur, password.expose());
            cur.extend_from_slice(b"\r\n");
            segments.push(cur);
            return segments;
        }
        Credentials::Password {
            authzid: Some(z),
            authcid,
            password,
        } => ("PLAIN", sasl::encode_plain(Some(z), authcid, password)),
        Credentials::OAuth {
            mechanism,
            initial_response,
            ..
        } => (mechanism.name(), initial_response.clone()),
    };
    cur.extend_from_slice(b" AUTHENTICATE ");
    cur.extend_from_slice(mechanism.as_bytes());
    let mut response = sasl::encode_base64(payload.expose());
    if sasl_ir {
        cur.push(b' ');
        cur.append(&mut response);
        cur.extend_from_slice(b"\r\n");
        segments.push(cur);
    } else {
        cur.extend_from_slice(b"\r\n");
        segments.push(cur);
        if response == b"=" {
            response.clear();
        }
        response.extend_from_slice(b"\r\n");
        segments.push(response);
    }
    segments
}

fn push_pair(out: &mut Vec<u8>, first: bool, name: &str, value: Option<&str>) {
    if !first {
        out.push(b' ');
    }
    push_quoted(out, name.as_bytes());
    out.push(b' ');
    match value {
        Some(v) => push_quoted(out, v.as_bytes()),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// The allow-listed (RFC 2971) name for a client field, lower-cased, or `None`: every
/// other name, `x-*` above all, is mailgate's alone to send.
fn allowed_name(name: &str) -> Option<&'static str> {
    CLIENT_ID_FIELDS
        .iter()
        .copied()
        .find(|f| f.eq_ignore_ascii_case(name))
}

/// `ID (...)` (without tag and CRLF): mailgate's forwarding fields first, then those of
/// the client's own fields that RFC 2971 names ([`CLIENT_ID_FIELDS`]), each once, under
/// its lower-case name. Everything a backend trusts from its proxy comes from mailgate.
pub(crate) fn id_command(forward: &ForwardInfo) -> Vec<u8> {
    let (mut client_port, mut connected_port, mut ttl) = (
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
    );
    let ours = [
        ("x-originating-ip", forward.client.ip.as_str()),
        (
            "x-originating-port",
            client_port.format(forward.client.port),
        ),
        ("x-connected-ip", forward.connected.ip.as_str()),
        (
            "x-connected-port",
            connected_port.format(forward.connected.port),
        ),
        ("x-session-id", forward.session_id.as_str()),
        ("x-proxy-ttl", ttl.format(forward.forwarded_ttl())),
        ("x-client-transport", forward.client_transport()),
    ];
    // One buffer, room for mailgate's own pairs: a command of about 250 bytes.
    let mut list = Vec::with_capacity(ID_CAPACITY);
    list.extend_from_slice(b"ID (");
    let mut pairs = 0;
    for (name, value) in ours {
        if quotable(value.as_bytes()) && value.len() <= ID_MAX_VALUE {
            push_pair(&mut list, pairs == 0, name, Some(value));
            pairs += 1;
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &forward.client_id {
        if pairs >= ID_MAX_PAIRS {
            break;
        }
        let Some(name) = allowed_name(name) else {
            continue;
        };
        let value_ok = value
            .as_deref()
            .is_none_or(|v| v.len() <= ID_MAX_VALUE && quotable(v.as_bytes()));
        if value_ok && !seen.contains(&name) {
            seen.push(name);
            push_pair(&mut list, pairs == 0, name, value.as_deref());
            pairs += 1;
        }
    }
    list.push(b')');
    list
}

/// What [`id_command`] reserves: mailgate's pairs with IPv6 addresses fit.
const ID_CAPACITY: usize = 320;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login::ClientAddr;
    use crate::secret::Secret;

    fn password(user: &str, pw: &[u8]) -> LoginRequest {
        LoginRequest {
            credentials: Credentials::Password {
                authzid: None,
                authcid: user.into(),
                password: Secret::new(pw),
            },
        }
    }

    #[test]
    fn login_quoting() {
        assert_eq!(
            login(b"mg1", &password("a@b", b"p\"w\\"), false),
            vec![b"mg1 LOGIN \"a@b\" \"p\\\"w\\\\\"\r\n".to_vec()]
        );
        assert_eq!(
            login(b"mg1", &password("a", "pä".as_bytes()), false),
            vec![
                b"mg1 LOGIN \"a\" {3}\r\n".to_vec(),
                "pä\r\n".as_bytes().to_vec()
            ]
        );
    }

    #[test]
    fn plain_with_authzid() {
        let req = LoginRequest {
            credentials: Credentials::Password {
                authzid: Some("z".into()),
                authcid: "u".into(),
                password: Secret::new("p"),
            },
        };
        assert_eq!(
            login(b"mg2", &req, true),
            vec![b"mg2 AUTHENTICATE PLAIN egB1AHA=\r\n".to_vec()]
        );
        assert_eq!(
            login(b"mg2", &req, false),
            vec![
                b"mg2 AUTHENTICATE PLAIN\r\n".to_vec(),
                b"egB1AHA=\r\n".to_vec()
            ]
        );
    }

    #[test]
    fn id_forwards_only_rfc2971_fields() {
        let f = ForwardInfo {
            client: ClientAddr {
                ip: "192.0.2.1".into(),
                port: 5000,
            },
            connected: ClientAddr {
                ip: "192.0.2.2".into(),
                port: 143,
            },
            session_id: "s1".into(),
            client_tls: false,
            proxy_ttl: crate::login::PROXY_TTL,
            client_id: vec![
                ("Name".into(), Some("Thunderbird".into())),
                ("X-Originating-IP".into(), Some("10.0.0.1".into())),
                ("x-forward-foo".into(), Some("1".into())),
                ("x-client-transport".into(), Some("TLS".into())),
                ("x-proxy-ttl".into(), Some("0".into())),
                ("os".into(), None),
                ("name".into(), Some("second".into())),
                ("nameless".into(), Some("x".into())),
            ],
        };
        assert_eq!(
            String::from_utf8(id_command(&f)).expect("ascii"),
            "ID (\"x-originating-ip\" \"192.0.2.1\" \"x-originating-port\" \"5000\" \
             \"x-connected-ip\" \"192.0.2.2\" \"x-connected-port\" \"143\" \
             \"x-session-id\" \"s1\" \"x-proxy-ttl\" \"4\" \"x-client-transport\" \"insecure\" \
             \"name\" \"Thunderbird\" \"os\" NIL)"
        );
    }
}
