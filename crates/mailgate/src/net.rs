//! Socket details: keepalive and no-delay on every connection, the PROXY protocol v2
//! header towards backends that want it.

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// TCP keepalive: find dead peers of long idle sessions (IMAP IDLE) within minutes.
pub fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let ka = TcpKeepalive::new()
        .with_time(Duration::from_secs(120))
        .with_interval(Duration::from_secs(30))
        .with_retries(4);
    let _ = SockRef::from(stream).set_tcp_keepalive(&ka);
}

/// A PROXY protocol v2 header announcing `client` → `local` over TCP.
pub fn proxy_v2_header(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
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
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addrs)
        .build()
        .unwrap_or_default()
}

/// Longest PROXY v2 header accepted (addresses plus a few TLVs).
const MAX_PROXY_HEADER: usize = 16 + 536;

/// Why an inbound PROXY v2 header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// Reading failed or the peer closed.
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] std::io::Error),
    /// Not a PROXY protocol v2 header.
    #[error("not a PROXY protocol v2 header")]
    Invalid,
    /// Longer than mailgate accepts.
    #[error("PROXY header too long")]
    TooLong,
}

/// Read a PROXY protocol v2 header from a trusted load balancer (`listen.proxy_from`).
/// Reads exactly the header's bytes. Returns the client address it announces, or `None`
/// for a `LOCAL` header (health checks of the load balancer itself).
pub async fn read_proxy_v2(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut head = [0u8; 16];
    tcp.read_exact(&mut head).await?;
    if head[..12] != *b"\r\n\r\n\0\r\nQUIT\n" {
        return Err(ProxyHeaderError::Invalid);
    }
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    if 16 + len > MAX_PROXY_HEADER {
        return Err(ProxyHeaderError::TooLong);
    }
    let mut all = vec![0u8; 16 + len];
    all[..16].copy_from_slice(&head);
    tcp.read_exact(&mut all[16..]).await?;
    let header =
        ppp::v2::Header::try_from(all.as_slice()).map_err(|_| ProxyHeaderError::Invalid)?;
    if header.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        ppp::v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn proxy_v2_roundtrip_reads_exactly_the_header() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client: SocketAddr = "192.0.2.44:40123".parse().expect("addr");
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let mut bytes = proxy_v2_header(client, addr);
            bytes.extend_from_slice(b"a1 CAPABILITY\r\n");
            s.write_all(&bytes).await.expect("write");
            s
        });
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let got = read_proxy_v2(&mut tcp).await.expect("header");
        assert_eq!(got, Some(client));
        let mut rest = [0u8; 15];
        tcp.read_exact(&mut rest).await.expect("rest");
        assert_eq!(&rest, b"a1 CAPABILITY\r\n");
        drop(writer.await);
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"a1 LOGIN user pass\r\n").await.expect("write");
            s
        });
        let (mut tcp, _) = listener.accept().await.expect("accept");
        assert!(read_proxy_v2(&mut tcp).await.is_err());
        drop(writer.await);
    }
}
