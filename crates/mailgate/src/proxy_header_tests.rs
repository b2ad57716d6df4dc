//! PROXY v1 known answers, garbage, the 107-byte limit, auto-detection, exact reads.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::net::{ProxyTlvs, proxy_v2_header};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

const GOOD: &[(&str, Option<&str>)] = &[
    (
        "PROXY TCP4 192.0.2.44 10.0.0.1 40123 143\r\n",
        Some("192.0.2.44:40123"),
    ),
    ("PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", Some("0.0.0.0:0")),
    (
        "PROXY TCP4 255.255.255.255 127.0.0.1 65535 993\r\n",
        Some("255.255.255.255:65535"),
    ),
    (
        "PROXY TCP6 2001:db8::7 ::1 5000 110\r\n",
        Some("[2001:db8::7]:5000"),
    ),
    (
        "PROXY TCP6 ::ffff:192.0.2.1 ::1 1 995\r\n",
        Some("[::ffff:192.0.2.1]:1"),
    ),
    (
        "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
        Some("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
    ),
    ("PROXY UNKNOWN\r\n", None),
    ("PROXY UNKNOWN 192.0.2.1 10.0.0.1 1 2\r\n", None),
    ("PROXY UNKNOWN whatever the sender likes\r\n", None),
];

#[test]
fn known_answers() {
    for (text, want) in GOOD {
        let got = parse_proxy_v1(text.as_bytes());
        assert_eq!(got.ok(), Some((want.map(addr), text.len())), "{text:?}");
        // The same through auto-detection, with the session's first bytes behind it.
        let mut more = text.as_bytes().to_vec();
        more.extend_from_slice(b"a1 CAPABILITY\r\n");
        let h = parse_inbound(&more).expect(text);
        assert_eq!(h.version, ProxyVersion::V1);
        assert_eq!((h.client, h.len), (want.map(addr), text.len()));
    }
}

#[test]
fn agrees_with_the_ppp_crate_on_valid_headers() {
    for (text, want) in GOOD.iter().filter(|(_, w)| w.is_some()) {
        let theirs = ppp::v1::Header::try_from(*text).expect(text);
        let source = match theirs.addresses {
            ppp::v1::Addresses::Tcp4(a) => SocketAddr::new(a.source_address.into(), a.source_port),
            ppp::v1::Addresses::Tcp6(a) => SocketAddr::new(a.source_address.into(), a.source_port),
            ppp::v1::Addresses::Unknown => panic!("{text}: ppp says unknown"),
        };
        assert_eq!(Some(source), want.map(addr), "{text:?}");
    }
}

#[test]
fn garbage_is_invalid() {
    let bad: &[&str] = &[
        "proxy TCP4 192.0.2.44 10.0.0.1 40123 143\r\n",
        "PROXY  TCP4 192.0.2.44 10.0.0.1 40123 143\r\n",
        "PROXY TCP4 192.0.2.44  10.0.0.1 40123 143\r\n",
        "PROXY TCP4 192.0.2.44 10.0.0.1 40123 143 \r\n",
        "PROXY TCP4 192.0.2.44 10.0.0.1 40123\r\n",
        "PROXY TCP4 192.0.2.44 10.0.0.1 40123 143 7\r\n",
        "PROXY TCP4 2001:db8::7 10.0.0.1 40123 143\r\n",
        "PROXY TCP6 192.0.2.44 ::1 40123 143\r\n",
        "PROXY TCP4 192.0.2.44 ::1 40123 143\r\n",
        "PROXY TCP4 192.0.2.256 10.0.0.1 40123 143\r\n",
        "PROXY TCP4 192.0.2.044 10.0.0.1 40123 143\r\n",
        "PROXY TCP4 192.0.2.44 10.0.0.1 65536 143\r\n",
        "PROXY TCP4 192.0.2.44 10.0.0.1 040123 143\r\n",
        "PROXY TCP4 192.0.2.44 10.0.0.1 01 143\r\n",
        "PROXY TCP4 192.0.2.44 10.0.0.1 -1 143\r\n",
        "PROXY TCP4 192.0.2.44 10.0.0.1 +1 143\r\n",
        "PROXY TCP4 192.0.2.44 10.0.0.1 40123 x\r\n",
        "PROXY UDP4 192.0.2.44 10.0.0.1 40123 143\r\n",
        "PROXY tcp4 192.0.2.44 10.0.0.1 40123 143\r\n",
        "PROXY TCP4 192.0.2.44 10.0.0.1 40123 143\n",
        "PROXY TCP4 192.0.2.44 10.0.0.1 40123 143\r\r\n",
        "PROXY TCP4 192.0.2.44\r10.0.0.1 40123 143\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY\r\n",
        "PROXY \r\n",
        "PROXYTCP4 192.0.2.44 10.0.0.1 40123 143\r\n",
        "a1 LOGIN user pass\r\n",
        "GET / HTTP/1.1\r\n",
    ];
    for text in bad {
        assert!(
            matches!(
                parse_proxy_v1(text.as_bytes()),
                Err(ProxyHeaderError::Invalid)
            ),
            "{text:?}: {:?}",
            parse_proxy_v1(text.as_bytes())
        );
    }
    // Not UTF-8, and a NUL.
    assert!(matches!(
        parse_proxy_v1(b"PROXY TCP4 \xff.0.2.44 10.0.0.1 1 2\r\n"),
        Err(ProxyHeaderError::Invalid)
    ));
    assert!(matches!(
        parse_proxy_v1(b"PROXY TCP4 192.0.2.44\x0010.0.0.1 1 2\r\n"),
        Err(ProxyHeaderError::Invalid)
    ));
    // Neither version's first bytes.
    for bytes in [&b"a1 NOOP\r\n"[..], b"\x16\x03\x01", b"X"] {
        assert!(matches!(
            parse_inbound(bytes),
            Err(ProxyHeaderError::Invalid)
        ));
    }
}

#[test]
fn the_107_byte_limit() {
    let filler = |n: usize| format!("PROXY UNKNOWN {}\r\n", "x".repeat(n));
    let longest = filler(MAX_V1_HEADER - 16);
    assert_eq!(longest.len(), MAX_V1_HEADER);
    assert_eq!(
        parse_proxy_v1(longest.as_bytes()).ok(),
        Some((None, MAX_V1_HEADER))
    );
    let over = filler(MAX_V1_HEADER - 15);
    assert!(matches!(
        parse_proxy_v1(over.as_bytes()),
        Err(ProxyHeaderError::TooLong)
    ));
    // No line end in a whole 107 bytes, and far more.
    let endless = format!("PROXY TCP4 {}", "1".repeat(200));
    assert!(matches!(
        parse_proxy_v1(&endless.as_bytes()[..MAX_V1_HEADER]),
        Err(ProxyHeaderError::TooLong)
    ));
    assert!(matches!(
        parse_inbound(endless.as_bytes()),
        Err(ProxyHeaderError::TooLong)
    ));
}

#[test]
fn every_prefix_of_a_header_is_incomplete() {
    let v2 = proxy_v2_header(
        addr("192.0.2.44:40123"),
        addr("127.0.0.1:143"),
        ProxyTlvs::default(),
    );
    for (text, _) in GOOD {
        let bytes = text.as_bytes();
        for end in 0..bytes.len() {
            assert!(
                matches!(
                    parse_inbound(&bytes[..end]),
                    Err(ProxyHeaderError::Truncated)
                ),
                "{:?}",
                &text[..end]
            );
        }
    }
    for end in 0..v2.len() {
        assert!(matches!(
            parse_inbound(&v2[..end]),
            Err(ProxyHeaderError::Truncated)
        ));
    }
    let h = parse_inbound(&v2).expect("v2");
    assert_eq!(h.version, ProxyVersion::V2);
    assert_eq!(
        (h.client, h.len),
        (Some(addr("192.0.2.44:40123")), v2.len())
    );
}

/// Writes `bytes` to a fresh loopback connection and reads the header from the other
/// end; returns what it read and the next `rest` bytes after it.
async fn read_over_tcp(
    bytes: Vec<u8>,
    rest: usize,
) -> (Result<ProxyHeader, ProxyHeaderError>, Vec<u8>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let to = listener.local_addr().expect("addr");
    let writer = tokio::spawn(async move {
        let mut s = TcpStream::connect(to).await.expect("connect");
        s.write_all(&bytes).await.expect("write");
        // Keep the connection open: a reader that wants more than the header would hang
        // here (the test's timeout catches it) instead of seeing EOF.
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        drop(s);
    });
    let (mut tcp, _) = listener.accept().await.expect("accept");
    let got = tokio::time::timeout(std::time::Duration::from_secs(2), read_inbound(&mut tcp))
        .await
        .expect("read_inbound read past the header (it waited for more bytes)");
    let mut after = vec![0u8; rest];
    if got.is_ok() {
        tcp.read_exact(&mut after).await.expect("rest");
    }
    writer.abort();
    (got, after)
}

#[tokio::test]
async fn reads_exactly_the_header_of_either_version() {
    // The shortest v1 header (15 bytes) with nothing after it: the client waits for the
    // greeting, so reading even one byte more would hang.
    let (got, _) = read_over_tcp(b"PROXY UNKNOWN\r\n".to_vec(), 0).await;
    let h = got.expect("v1 unknown");
    assert_eq!((h.client, h.len, h.version), (None, 15, ProxyVersion::V1));

    let mut v1 = b"PROXY TCP4 192.0.2.44 10.0.0.1 40123 143\r\n".to_vec();
    v1.extend_from_slice(b"a1 NOOP\r\n");
    let (got, rest) = read_over_tcp(v1, 9).await;
    assert_eq!(got.expect("v1").client, Some(addr("192.0.2.44:40123")));
    assert_eq!(rest, b"a1 NOOP\r\n");

    let client = addr("[2001:db8::7]:5000");
    // With TLVs (as mailgate itself sends them): read exactly as well.
    let tlvs = ProxyTlvs {
        client_tls: Some("TLSv1.2"),
        unique_id: Some("mg-ff"),
    };
    let mut v2 = proxy_v2_header(client, addr("[::1]:143"), tlvs);
    v2.extend_from_slice(b"a1 NOOP\r\n");
    let (got, rest) = read_over_tcp(v2, 9).await;
    let h = got.expect("v2");
    assert_eq!((h.client, h.version), (Some(client), ProxyVersion::V2));
    assert_eq!(rest, b"a1 NOOP\r\n");
}

#[tokio::test]
async fn refuses_garbage_and_overlong_lines_over_tcp() {
    let (got, _) = read_over_tcp(b"a1 LOGIN user pass\r\n".to_vec(), 0).await;
    assert!(matches!(got, Err(ProxyHeaderError::Invalid)));
    let (got, _) = read_over_tcp(format!("PROXY TCP4 {}", "9".repeat(300)).into_bytes(), 0).await;
    assert!(matches!(got, Err(ProxyHeaderError::TooLong)), "{got:?}");
    let (got, _) = read_over_tcp(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(), 0).await;
    assert!(matches!(got, Err(ProxyHeaderError::Invalid)));
}
