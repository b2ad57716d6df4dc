//! Bodies of the server's fuzz targets (crates/mailgate/fuzz), shared with the corpus
//! replay test (`tests/fuzz_corpus.rs`). Not an API: each function panics when an oracle
//! fails.
//!
//! - [`proxy_v2`]: the inbound PROXY protocol v2 header ([`crate::proxy_header::parse_proxy_v2`],
//!   which `read_inbound` uses): never panics; a header is read exactly (its announced
//!   length, never a byte more, and any shorter prefix is incomplete); what mailgate's
//!   own writer produces for the address it read parses back to that address.
//! - [`proxy_inbound`]: the inbound PROXY header of either version
//!   ([`crate::proxy_header::parse_inbound`], which `read_inbound` uses): never panics; a
//!   v1 header is at most 107 bytes and ends in CRLF; a header is read exactly (the same
//!   meaning without what follows, a shorter prefix is `Truncated`); a v1 client address
//!   written back as a v1 line parses to itself.
//! - [`admin_request`]: the admin listener's parsing of a request's path
//!   (`/backends/{name}/drain`), query (percent-decoding, `POST /kick` selectors and
//!   window) and bearer token: never panics; decoding inverts encoding; a token is allowed
//!   exactly when the header carries it.

use std::net::SocketAddr;
use std::path::Path;

use mailgate_health::KickSelector;

use crate::admin::auth::{self, AuthResult, Token, TokenStore};
use crate::admin::{http, routes};
use crate::net::{ProxyTlvs, proxy_v2_header};
use crate::proxy_header::{ProxyHeaderError, parse_proxy_v2};

const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The `proxy_inbound` fuzz target. Byte 0: bit 0 puts `PROXY ` in front of the rest,
/// bit 1 the v2 signature (bit 0 wins), else the rest is the whole input.
pub fn proxy_inbound(data: &[u8]) {
    use crate::proxy_header::{MAX_V1_HEADER, ProxyVersion, parse_inbound};
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mut input: Vec<u8> = Vec::with_capacity(rest.len() + 12);
    if control & 1 != 0 {
        input.extend_from_slice(b"PROXY ");
    } else if control & 2 != 0 {
        input.extend_from_slice(SIGNATURE);
    }
    input.extend_from_slice(rest);
    let Ok(h) = parse_inbound(&input) else {
        return;
    };
    assert!(h.len <= input.len(), "consumed more than the input");
    if h.version == ProxyVersion::V1 {
        assert!(h.len <= MAX_V1_HEADER, "a v1 header over 107 bytes");
        assert!(
            input[..h.len].ends_with(b"\r\n"),
            "a v1 header not ending in CRLF"
        );
    }
    let exact = parse_inbound(&input[..h.len]).expect("the header alone parses");
    assert_eq!(exact, h, "bytes after the header changed its meaning");
    assert!(
        matches!(
            parse_inbound(&input[..h.len - 1]),
            Err(ProxyHeaderError::Truncated)
        ),
        "a truncated header was not refused as incomplete"
    );
    if let (ProxyVersion::V1, Some(c)) = (h.version, h.client) {
        let (family, dst) = if c.is_ipv4() {
            ("TCP4", "127.0.0.1")
        } else {
            ("TCP6", "::1")
        };
        let line = format!("PROXY {family} {} {dst} {} 143\r\n", c.ip(), c.port());
        let again = parse_inbound(line.as_bytes()).expect("a written v1 line parses");
        assert_eq!(again.client, Some(c), "a v1 address does not round-trip");
    }
}

/// The `proxy_v2` fuzz target. Byte 0: bit 0 the PROXY v2 signature is put in front of
/// the rest (so most inputs get past it), else the rest is the whole input.
pub fn proxy_v2(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let input: Vec<u8> = if control & 1 != 0 {
        let mut v = SIGNATURE.to_vec();
        v.extend_from_slice(rest);
        v
    } else {
        rest.to_vec()
    };
    let Ok((client, len)) = parse_proxy_v2(&input) else {
        return;
    };
    let announced = 16 + usize::from(u16::from_be_bytes([input[14], input[15]]));
    assert_eq!(len, announced, "header length is not the announced one");
    assert!(len <= input.len(), "consumed more than the input");
    // Reads exactly the header: the same without what follows, incomplete with less.
    let exact = parse_proxy_v2(&input[..len]).expect("the header alone parses");
    assert_eq!(
        exact,
        (client, len),
        "bytes after the header changed its meaning"
    );
    assert!(
        matches!(
            parse_proxy_v2(&input[..len - 1]),
            Err(ProxyHeaderError::Truncated)
        ),
        "a truncated header was not refused as incomplete"
    );
    // mailgate's own writer (towards backends) round-trips the address.
    if let Some(client) = client {
        let local: SocketAddr = if client.is_ipv4() {
            "127.0.0.1:143".parse().expect("address")
        } else {
            "[::1]:143".parse().expect("address")
        };
        for tlvs in [
            ProxyTlvs::default(),
            ProxyTlvs {
                client_tls: Some("TLSv1.3"),
                unique_id: Some("session-1"),
            },
        ] {
            let header = proxy_v2_header(client, local, tlvs);
            let parsed = parse_proxy_v2(&header).expect("mailgate's own header parses");
            assert_eq!(
                parsed,
                (Some(client), header.len()),
                "mailgate's own header does not round-trip"
            );
        }
    }
}

/// The `admin_request` fuzz target. The input's lines: the request path, its query, the
/// `Authorization` header's value, the token file's content.
pub fn admin_request(data: &[u8]) {
    let mut fields = data.splitn(4, |b| *b == b'\n');
    let path = String::from_utf8_lossy(fields.next().unwrap_or_default());
    let query = String::from_utf8_lossy(fields.next().unwrap_or_default());
    let authorization = fields.next().unwrap_or_default();
    let token_text = String::from_utf8_lossy(fields.next().unwrap_or_default());
    check_path(&path);
    check_query(&query);
    check_bearer(authorization, &token_text);
}

fn check_path(path: &str) {
    let _ = http::decode(path);
    let Some((name, drain)) = routes::drain_target(path) else {
        return;
    };
    assert!(
        !name.is_empty() && !name.contains('/'),
        "drain target name is empty or has a slash"
    );
    assert!(
        path.starts_with("/backends/"),
        "drain target outside /backends/"
    );
    let action = if drain { "drain" } else { "undrain" };
    assert!(
        path.ends_with(&format!("/{action}")),
        "drain flag differs from the path"
    );
    // What `mailgate ctl` sends for this name means the same.
    let again = format!("/backends/{}/{action}", http::encode(&name));
    assert_eq!(
        routes::drain_target(&again),
        Some((name, drain)),
        "an encoded drain path does not round-trip"
    );
}

fn check_query(query: &str) {
    let pairs = http::query_pairs(Some(query));
    for (k, v) in &pairs {
        assert_eq!(&http::decode(&http::encode(k)), k, "decode(encode(name))");
        assert_eq!(&http::decode(&http::encode(v)), v, "decode(encode(value))");
        let one = format!("{}={}", http::encode(k), http::encode(v));
        assert_eq!(
            http::query_pairs(Some(&one)),
            vec![(k.clone(), v.clone())],
            "an encoded pair does not round-trip"
        );
    }
    let Ok(kick) = routes::kick_query(Some(query)) else {
        return;
    };
    let given = http::query_get(&pairs, kick.key).map(str::trim);
    assert_eq!(
        given,
        Some(kick.value.as_str()),
        "kick value is not the one given"
    );
    assert!(!kick.value.is_empty(), "empty kick value accepted");
    let others = ["backend", "domain", "user"]
        .iter()
        .filter(|k| **k != kick.key && http::query_get(&pairs, k).is_some())
        .count();
    assert_eq!(others, 0, "a kick with two selectors accepted");
    if let Some(w) = kick.window {
        assert!(w.as_secs() <= 24 * 3600, "kick window over 24h accepted");
    }
    match &kick.selector {
        KickSelector::Backend(b) => assert_eq!(b, &kick.value, "backend selector"),
        KickSelector::Domain(d) => assert_eq!(
            mailgate_config::normalize::normalize_domain(d).as_deref(),
            Some(d.as_str()),
            "domain selector not in normal form"
        ),
        KickSelector::User(u) => assert_eq!(
            mailgate_config::normalize::parse_login(u, None).map(|l| l.address()),
            Some(u.clone()),
            "user selector not in normal form"
        ),
    }
}

fn check_bearer(authorization: &[u8], token_text: &str) {
    if let Some(presented) = auth::bearer(authorization) {
        assert!(
            authorization.len() >= 7 && authorization[..7].eq_ignore_ascii_case(b"bearer "),
            "bearer credentials without the Bearer scheme"
        );
        assert!(
            !presented.is_empty()
                && presented.first() != Some(&b' ')
                && presented.last() != Some(&b' '),
            "bearer credentials empty or not trimmed"
        );
    }
    let none = TokenStore::with_token(None);
    assert_eq!(
        none.check(Some(authorization)),
        AuthResult::NotConfigured,
        "a request passed with no token configured"
    );
    let Ok(token) = Token::parse(token_text, Path::new("admin.token")) else {
        return;
    };
    let expected = token_text.trim().as_bytes().to_vec();
    assert!(
        !expected.is_empty() && expected.iter().all(u8::is_ascii_graphic),
        "a token that cannot travel in a header was accepted"
    );
    let store = TokenStore::with_token(Some(token));
    let allowed = store.check(Some(authorization)) == AuthResult::Allowed;
    assert_eq!(
        allowed,
        auth::bearer(authorization) == Some(expected.as_slice()),
        "allowed differs from the header carrying the token"
    );
    let mut right = b"Bearer ".to_vec();
    right.extend_from_slice(&expected);
    assert_eq!(
        store.check(Some(&right)),
        AuthResult::Allowed,
        "the token itself refused"
    );
    right.push(b'x');
    assert_eq!(
        store.check(Some(&right)),
        AuthResult::Denied,
        "a longer token allowed"
    );
    assert_eq!(store.check(None), AuthResult::Denied, "no header allowed");
}
