//! Small HTTP helpers for the admin server: response builders with safe default headers,
//! and query-string parsing (percent-decoding, `+` as space).

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// The response type of every admin handler.
pub type Resp = Response<Full<Bytes>>;

/// Content security policy of the status page: nothing external, inline CSS only, forms
/// post back to this origin.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

/// A response with `body` of `content_type`, never cached.
pub fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Plain text.
pub fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    response(status, "text/plain; charset=utf-8", body.into())
}

/// JSON (pretty-printed: people read it with curl too).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Resp {
    let mut body = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    body.push('\n');
    response(status, "application/json", body)
}

/// A JSON error `{"error": message}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Resp {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// The HTML status page, with a strict content security policy.
pub fn html(body: String) -> Resp {
    let mut r = response(StatusCode::OK, "text/html; charset=utf-8", body);
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r.headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// 405 with the methods that are allowed.
pub fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow}"));
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Query parameters in order; names and values percent-decoded (`+` is a space). Invalid
/// UTF-8 becomes U+FFFD.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The first value of `name`.
pub fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode one query component.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let pair = bytes
                    .get(i + 1)
                    .and_then(|h| hex(*h))
                    .zip(bytes.get(i + 2).and_then(|l| hex(*l)));
                if let Some((h, l)) = pair {
                    out.push(h << 4 | l);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encode a query component (for `mailgate ctl`).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_decoded() {
        let q = query_pairs(Some(
            "user=alice%40Example.com&window=30s&x&domain=a+b&bad=%zz%4",
        ));
        assert_eq!(query_get(&q, "user"), Some("alice@Example.com"));
        assert_eq!(query_get(&q, "window"), Some("30s"));
        assert_eq!(query_get(&q, "x"), Some(""));
        assert_eq!(query_get(&q, "domain"), Some("a b"));
        assert_eq!(query_get(&q, "bad"), Some("%zz%4"));
        assert_eq!(query_get(&q, "missing"), None);
        assert!(query_pairs(None).is_empty());
    }

    #[test]
    fn encode_round_trips() {
        for s in ["alice@example.com", "a b&c=d", "ü.example", "%41"] {
            assert_eq!(decode(&encode(s)), s);
        }
    }
}
