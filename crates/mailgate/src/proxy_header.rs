//! The inbound PROXY protocol header from a trusted load balancer (`listen.proxy_from`):
//! version 1 (`PROXY TCP4 192.0.2.44 10.0.0.1 40123 143\r\n`, text, at most 107 bytes) or
//! version 2 (binary, [`parse_proxy_v2`]), told apart by their first bytes. (The header
//! mailgate itself sends to backends is built in `net.rs`.)
//!
//! The parsers are pure functions over a byte buffer that may hold more than the header
//! (fuzz targets and tests feed them directly); [`read_inbound`] reads exactly the
//! header's bytes from the socket, so what the client sends next is left for the session.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest PROXY v2 header accepted (addresses plus a few TLVs).
const MAX_PROXY_HEADER: usize = 16 + 536;

/// The 12 bytes every PROXY protocol v2 header starts with.
const PROXY_V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Why an inbound PROXY header (v1 or v2) was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// Reading failed or the peer closed.
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] std::io::Error),
    /// Not a PROXY protocol header (of the version its first bytes announce).
    #[error("not a PROXY protocol v1 or v2 header")]
    Invalid,
    /// Longer than mailgate accepts.
    #[error("PROXY header too long")]
    TooLong,
    /// Fewer bytes than the header announces.
    #[error("PROXY header truncated")]
    Truncated,
}

/// The whole length of the PROXY v2 header that starts with `head` (its fixed 16 bytes):
/// checks the signature and mailgate's length limit.
pub fn proxy_v2_len(head: &[u8; 16]) -> Result<usize, ProxyHeaderError> {
    if head[..12] != *PROXY_V2_SIGNATURE {
        return Err(ProxyHeaderError::Invalid);
    }
    let len = 16 + usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > MAX_PROXY_HEADER {
        return Err(ProxyHeaderError::TooLong);
    }
    Ok(len)
}

/// Parse the PROXY v2 header at the start of `bytes` (which may hold more): the client
/// address it announces (`None` for a `LOCAL` header, the load balancer's own health
/// check, or an address family other than TCP/UDP over IPv4/IPv6) and the header's length.
pub fn parse_proxy_v2(bytes: &[u8]) -> Result<(Option<SocketAddr>, usize), ProxyHeaderError> {
    let head: &[u8; 16] = bytes
        .get(..16)
        .and_then(|h| h.try_into().ok())
        .ok_or(ProxyHeaderError::Truncated)?;
    let len = proxy_v2_len(head)?;
    let all = bytes.get(..len).ok_or(ProxyHeaderError::Truncated)?;
    let header = ppp::v2::Header::try_from(all).map_err(|_| ProxyHeaderError::Invalid)?;
    if header.command == ppp::v2::Command::Local {
        return Ok((None, len));
    }
    let client = match header.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        ppp::v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        _ => None,
    };
    Ok((client, len))
}

/// Longest PROXY v1 header, `\r\n` included (the spec's limit).
pub const MAX_V1_HEADER: usize = 107;

/// What every PROXY v1 header starts with.
const V1_PREFIX: &[u8; 5] = b"PROXY";
/// The first 5 bytes of the PROXY v2 signature.
const V2_PREFIX: &[u8; 5] = b"\r\n\r\n\0";

/// Which version of the protocol a header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// Text.
    V1,
    /// Binary.
    V2,
}

impl ProxyVersion {
    /// `v1` / `v2`, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
        }
    }
}

/// A parsed inbound header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The client address it announces; `None` for v1 `UNKNOWN`, v2 `LOCAL` (the load
    /// balancer's own health checks) or an address family other than IPv4/IPv6.
    pub client: Option<SocketAddr>,
    /// Bytes the header takes.
    pub len: usize,
    /// The version used.
    pub version: ProxyVersion,
}

/// Parse the PROXY v1 header at the start of `bytes` (which may hold more): the client
/// address and the header's length. `Truncated` while no `\r\n` came yet within the
/// 107-byte limit, `TooLong` past it, `Invalid` for anything that breaks the grammar
/// (one space between fields, `TCP4` with IPv4 addresses, `TCP6` with IPv6 ones, decimal
/// ports without leading zeros, `UNKNOWN` with anything or nothing up to the line end).
pub fn parse_proxy_v1(bytes: &[u8]) -> Result<(Option<SocketAddr>, usize), ProxyHeaderError> {
    let window = &bytes[..bytes.len().min(MAX_V1_HEADER)];
    // A prefix of "PROXY " that may still become a header is incomplete, not invalid.
    let prefix = b"PROXY ";
    let n = window.len().min(prefix.len());
    if window[..n] != prefix[..n] {
        return Err(ProxyHeaderError::Invalid);
    }
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return Err(if bytes.len() >= MAX_V1_HEADER {
            ProxyHeaderError::TooLong
        } else {
            ProxyHeaderError::Truncated
        });
    };
    let len = lf + 1;
    let line = window[..lf]
        .strip_suffix(b"\r")
        .ok_or(ProxyHeaderError::Invalid)?;
    if line.contains(&b'\r') {
        return Err(ProxyHeaderError::Invalid);
    }
    let line = std::str::from_utf8(line).map_err(|_| ProxyHeaderError::Invalid)?;
    let rest = line
        .strip_prefix("PROXY ")
        .ok_or(ProxyHeaderError::Invalid)?;
    if rest == "UNKNOWN" || rest.starts_with("UNKNOWN ") {
        return Ok((None, len));
    }
    let fields: Vec<&str> = rest.split(' ').collect();
    let [family, src, dst, sport, dport] = fields[..] else {
        return Err(ProxyHeaderError::Invalid);
    };
    // The destination is checked for the grammar only: mailgate knows its own address.
    let src: IpAddr = match family {
        "TCP4" => {
            ipv4(dst)?;
            ipv4(src)?.into()
        }
        "TCP6" => {
            ipv6(dst)?;
            ipv6(src)?.into()
        }
        _ => return Err(ProxyHeaderError::Invalid),
    };
    port(dport)?;
    Ok((Some(SocketAddr::new(src, port(sport)?)), len))
}

fn ipv4(s: &str) -> Result<Ipv4Addr, ProxyHeaderError> {
    s.parse().map_err(|_| ProxyHeaderError::Invalid)
}

fn ipv6(s: &str) -> Result<Ipv6Addr, ProxyHeaderError> {
    s.parse().map_err(|_| ProxyHeaderError::Invalid)
}

fn port(s: &str) -> Result<u16, ProxyHeaderError> {
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return Err(ProxyHeaderError::Invalid);
    }
    s.parse().map_err(|_| ProxyHeaderError::Invalid)
}

/// Parse the PROXY header (either version, told apart by its first bytes) at the start of
/// `bytes`, which may hold more. `Truncated` while too few bytes came to decide or to
/// finish the header.
pub fn parse_inbound(bytes: &[u8]) -> Result<ProxyHeader, ProxyHeaderError> {
    // The two prefixes differ in their first byte, so one byte decides.
    if bytes.is_empty() {
        return Err(ProxyHeaderError::Truncated);
    }
    let n = bytes.len().min(V1_PREFIX.len());
    if bytes[..n] == V1_PREFIX[..n] {
        let (client, len) = parse_proxy_v1(bytes)?;
        return Ok(ProxyHeader {
            client,
            len,
            version: ProxyVersion::V1,
        });
    }
    if bytes[..n] == V2_PREFIX[..n] {
        let (client, len) = parse_proxy_v2(bytes)?;
        return Ok(ProxyHeader {
            client,
            len,
            version: ProxyVersion::V2,
        });
    }
    Err(ProxyHeaderError::Invalid)
}

/// Read a PROXY header of either version from a trusted load balancer, exactly its bytes.
/// v1 is read a byte at a time up to its line end (at most 107 bytes: the client speaks
/// only after the greeting, so nothing may be read past the header).
pub async fn read_inbound(tcp: &mut TcpStream) -> Result<ProxyHeader, ProxyHeaderError> {
    let mut buf = vec![0u8; V1_PREFIX.len()];
    tcp.read_exact(&mut buf).await?;
    if buf[..] == V1_PREFIX[..] {
        let mut byte = [0u8; 1];
        while buf.len() < MAX_V1_HEADER && buf.last() != Some(&b'\n') {
            tcp.read_exact(&mut byte).await?;
            buf.push(byte[0]);
        }
    } else if buf[..] == V2_PREFIX[..] {
        let mut head = [0u8; 16];
        head[..5].copy_from_slice(&buf);
        tcp.read_exact(&mut head[5..]).await?;
        let len = proxy_v2_len(&head)?;
        buf = vec![0u8; len];
        buf[..16].copy_from_slice(&head);
        tcp.read_exact(&mut buf[16..]).await?;
    } else {
        return Err(ProxyHeaderError::Invalid);
    }
    parse_inbound(&buf)
}

#[cfg(test)]
#[path = "proxy_header_tests.rs"]
mod tests;
