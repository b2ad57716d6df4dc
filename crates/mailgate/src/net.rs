//! Socket details: keepalive and no-delay on every connection, the PROXY protocol v2
//! header towards backends that want it.

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
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
