//! Socket details: keepalive and no-delay on every connection (set once on each listening
//! socket: on Linux an accepted socket inherits them; a backend connection sets both
//! itself), the PROXY protocol v2 header towards backends that want it (addresses and
//! TLVs: only what mailgate itself knows of the session). The inbound header from a
//! trusted load balancer is read elsewhere (`proxy_header.rs`).

pub mod text;

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream};

use crate::conn::Conn;

/// TCP keepalive of client and backend connections: find dead peers of long idle
/// sessions (IMAP IDLE) within minutes.
fn keepalive() -> TcpKeepalive {
    TcpKeepalive::new()
        .with_time(Duration::from_secs(120))
        .with_interval(Duration::from_secs(30))
        .with_retries(4)
}

/// No-delay and keepalive on a listening socket, once: the connections it accepts
/// inherit both (Linux copies the listener's socket options into each accepted socket),
/// so accepting costs no `setsockopt` of its own. Also applied to listeners handed over by
/// a predecessor or systemd, which may have been set up by someone else.
pub fn tune_listener(listener: &TcpListener) -> std::io::Result<()> {
    let sock = SockRef::from(listener);
    sock.set_tcp_nodelay(true)?;
    sock.set_tcp_keepalive(&keepalive())
}

/// A backend connection: no-delay and keepalive (a connected socket inherits nothing).
/// Keepalive costs a few `setsockopt`s per session and is kept on purpose: a backend host
/// that vanishes without a reset under an idle IMAP IDLE session is found within minutes,
/// instead of holding the session (and its budget slot) until `limits.idle_timeout`.
pub fn tune_backend(stream: &TcpStream) {
    let sock = SockRef::from(stream);
    let _ = sock.set_tcp_nodelay(true);
    let _ = sock.set_tcp_keepalive(&keepalive());
}

/// What a PROXY v2 header towards a backend says beyond the two addresses: only what
/// mailgate itself knows of the session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyTlvs<'a> {
    /// The TLS version of the client's connection to mailgate (`TLSv1.3`), `None` for a
    /// plaintext client: `PP2_TYPE_SSL` with `PP2_CLIENT_SSL` and the version sub-TLV,
    /// sent only for a TLS client.
    pub client_tls: Option<&'a str>,
    /// mailgate's session id: `PP2_TYPE_UNIQUE_ID` (left out when empty or longer than
    /// the 128 bytes the spec allows).
    pub unique_id: Option<&'a str>,
}

/// `PP2_CLIENT_SSL`: the client connected over TLS.
const PP2_CLIENT_SSL: u8 = 0x01;
/// `PP2_SUBTYPE_SSL_VERSION`.
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
/// Longest `PP2_TYPE_UNIQUE_ID` value.
const MAX_UNIQUE_ID: usize = 128;

/// The `PP2_TYPE_SSL` value for a TLS client: client flags, `verify` (non-zero: mailgate
/// asks for no client certificate, so none was verified), the version sub-TLV.
fn ssl_tlv(version: &str) -> Vec<u8> {
    let version = &version.as_bytes()[..version.len().min(64)];
    let mut v = vec![PP2_CLIENT_SSL];
    v.extend_from_slice(&1u32.to_be_bytes());
    v.push(PP2_SUBTYPE_SSL_VERSION);
    v.extend_from_slice(&(version.len() as u16).to_be_bytes());
    v.extend_from_slice(version);
    v
}

/// The TLS version of a client connection as PROXY v2 and HAProxy name it (`TLSv1.3`),
/// `None` for plaintext.
pub fn tls_version(conn: &Conn) -> Option<&'static str> {
    let version = match conn {
        Conn::Plain(_) => return None,
        Conn::Tls(stream) => stream.get_ref().1.protocol_version(),
        Conn::FrontTls(stream) => Some(stream.protocol_version()),
    };
    Some(match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    })
}

/// A PROXY protocol v2 header announcing `client` → `local` over TCP, with the TLVs of
/// `tlvs`.
pub fn proxy_v2_header(client: SocketAddr, local: SocketAddr, tlvs: ProxyTlvs<'_>) -> Vec<u8> {
    let addrs: ppp::v2::Addresses = match (client, local) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => (client, local).into(),
        (c, l) => {
            let to6 = |a: SocketAddr| -> SocketAddr {
                match a {
                    SocketAddr::V4(v4) => {
                        SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
                    }
                    v6 => v6,
                }
            };
            (to6(c), to6(l)).into()
        }
    };
    let ssl = tlvs.client_tls.map(ssl_tlv);
    let unique_id = tlvs
        .unique_id
        .filter(|id| !id.is_empty() && id.len() <= MAX_UNIQUE_ID);
    // Writing into a Vec fails only past 64 KiB; these TLVs are a few dozen bytes.
    with_tlvs(addrs, ssl.as_deref(), unique_id).unwrap_or_default()
}

fn with_tlvs(
    addrs: ppp::v2::Addresses,
    ssl: Option<&[u8]>,
    unique_id: Option<&str>,
) -> std::io::Result<Vec<u8>> {
    use ppp::v2::{Builder, Command, Protocol, Type, Version};
    let mut b = Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addrs);
    if let Some(ssl) = ssl {
        b = b.write_tlv(Type::SSL, ssl)?;
    }
    if let Some(id) = unique_id {
        b = b.write_tlv(Type::UniqueId, id.as_bytes())?;
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TLVs of a header, as (type, value) pairs.
    fn tlvs_of(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let header = ppp::v2::Header::try_from(bytes).expect("a valid header");
        assert_eq!(header.len(), bytes.len(), "the whole buffer is the header");
        header
            .tlvs()
            .map(|t| {
                let t = t.expect("a well-formed TLV");
                (t.kind, t.value.to_vec())
            })
            .collect()
    }

    #[test]
    fn tlvs_say_what_mailgate_knows() {
        let client: SocketAddr = "192.0.2.44:40123".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:143".parse().expect("addr");
        // A plaintext client: no PP2_TYPE_SSL at all, the session id as PP2_TYPE_UNIQUE_ID.
        let plain = proxy_v2_header(
            client,
            local,
            ProxyTlvs {
                client_tls: None,
                unique_id: Some("mg-2a"),
            },
        );
        assert_eq!(tlvs_of(&plain), vec![(0x05, b"mg-2a".to_vec())]);
        // A TLS client: PP2_CLIENT_SSL, verify non-zero (no client certificate), the
        // version as PP2_SUBTYPE_SSL_VERSION.
        let tls = proxy_v2_header(
            client,
            local,
            ProxyTlvs {
                client_tls: Some("TLSv1.3"),
                unique_id: Some("mg-2b"),
            },
        );
        let mut ssl = vec![0x01, 0, 0, 0, 1, 0x21, 0, 7];
        ssl.extend_from_slice(b"TLSv1.3");
        assert_eq!(tlvs_of(&tls), vec![(0x20, ssl), (0x05, b"mg-2b".to_vec())]);
        // Nothing to say (probes): the bare addresses, as before TLVs existed.
        let bare = proxy_v2_header(client, local, ProxyTlvs::default());
        assert!(tlvs_of(&bare).is_empty());
        assert_eq!(bare.len(), 16 + 12);
        // An id past the spec's 128 bytes is left out rather than sent truncated.
        let long = "x".repeat(129);
        let header = proxy_v2_header(
            client,
            local,
            ProxyTlvs {
                client_tls: None,
                unique_id: Some(&long),
            },
        );
        assert!(tlvs_of(&header).is_empty());
    }

    #[tokio::test]
    async fn an_accepted_socket_inherits_nodelay_and_keepalive_from_its_listener() {
        let listener = crate::listener::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (tcp, _) = listener.accept().await.expect("accept");
        let s = SockRef::from(&tcp);
        assert!(s.tcp_nodelay().expect("TCP_NODELAY"), "TCP_NODELAY");
        assert!(s.keepalive().expect("SO_KEEPALIVE"), "SO_KEEPALIVE");
        assert_eq!(
            s.tcp_keepalive_time().expect("idle"),
            Duration::from_secs(120)
        );
        assert_eq!(
            s.tcp_keepalive_interval().expect("intvl"),
            Duration::from_secs(30)
        );
        assert_eq!(s.tcp_keepalive_retries().expect("cnt"), 4);
        // The connecting side (like a backend connection) has none of it by default.
        let c = SockRef::from(&client);
        assert!(!c.keepalive().expect("SO_KEEPALIVE"));
        tune_backend(&client);
        assert!(c.tcp_nodelay().expect("TCP_NODELAY"));
        assert!(c.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            c.tcp_keepalive_time().expect("idle"),
            Duration::from_secs(120)
        );
    }

    #[tokio::test]
    async fn a_handed_over_listener_gets_the_options_too() {
        // A listener as systemd or another process might hand it over: no options set.
        let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std.local_addr().expect("addr");
        assert!(!SockRef::from(&std).keepalive().expect("SO_KEEPALIVE"));
        crate::upgrade::inherit::add("imap".into(), std);
        let listener = crate::listener::bind(addr).expect("the inherited socket");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (tcp, _) = listener.accept().await.expect("accept");
        let s = SockRef::from(&tcp);
        assert!(s.tcp_nodelay().expect("TCP_NODELAY"));
        assert!(s.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            s.tcp_keepalive_time().expect("idle"),
            Duration::from_secs(120)
        );
    }
}
