//! Addresses and session ids as text (log fields, the backend's `ID` and PROXY header),
//! written without `core::fmt`'s integer formatting: each octet of an IPv4 address went
//! through `Display` for `u8` with its padding machinery, and a login writes four
//! addresses and two session ids (docs/performance.md, "Plain login: tracing and
//! capability parsing"). The text is exactly what `Display` writes; IPv6 addresses and
//! formats with a width or precision are left to `Display` itself. The tests compare.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// `255.255.255.255:65535`.
const V4_WITH_PORT: usize = 21;

/// Append `n` in decimal to `buf` at `at`; the new end.
fn push_decimal(buf: &mut [u8], at: usize, n: u16) -> usize {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    buf[at..at + digits.len()].copy_from_slice(digits);
    at + digits.len()
}

/// `ip` (and `:port`) as `Display` writes them, in `buf`.
fn v4(buf: &mut [u8; V4_WITH_PORT], ip: Ipv4Addr, port: Option<u16>) -> &str {
    let mut at = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[at] = b'.';
            at += 1;
        }
        at = push_decimal(buf, at, octet.into());
    }
    if let Some(port) = port {
        buf[at] = b':';
        at = push_decimal(buf, at + 1, port);
    }
    // Only ASCII digits, dots and a colon were written.
    std::str::from_utf8(&buf[..at]).unwrap_or_default()
}

/// A socket address as `SocketAddr`'s `Display` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrText(pub SocketAddr);

impl fmt::Display for AddrText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V4(a) if f.width().is_none() && f.precision().is_none() => {
                let mut buf = [0; V4_WITH_PORT];
                f.write_str(v4(&mut buf, *a.ip(), Some(a.port())))
            }
            other => fmt::Display::fmt(&other, f),
        }
    }
}

/// Append `ip.to_canonical()` as `Display` writes it (an IPv4-mapped IPv6 address as
/// IPv4).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip.to_canonical() {
        IpAddr::V4(ip) => {
            let mut buf = [0; V4_WITH_PORT];
            out.push_str(v4(&mut buf, ip, None));
        }
        IpAddr::V6(ip) => {
            use std::fmt::Write as _;
            // Writing into a String cannot fail.
            let _ = write!(out, "{ip}");
        }
    }
}

/// A session id as mailgate writes it everywhere: `mg-` and the number in lower-case hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = *b"mg-0000000000000000";
        let mut n = self.0;
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        // `mg-` then the digits: move the digits up to the prefix.
        let digits = buf.len() - i;
        buf.copy_within(i.., 3);
        let text = std::str::from_utf8(&buf[..3 + digits]).map_err(|_| fmt::Error)?;
        if f.width().is_none() && f.precision().is_none() {
            f.write_str(text)
        } else {
            f.pad(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_as_display() {
        let mut x: u64 = 12345;
        let mut addrs: Vec<SocketAddr> = [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "127.0.0.1:143",
            "10.0.0.1:9",
            "192.0.2.10:10000",
            "[::1]:993",
            "[2001:db8::1]:143",
            "[::ffff:192.0.2.1]:110",
            "[fe80::1%2]:143",
        ]
        .iter()
        .map(|a| a.parse().expect("addr"))
        .collect();
        for _ in 0..500 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let ip = Ipv4Addr::from((x >> 32) as u32);
            addrs.push(SocketAddr::new(ip.into(), (x >> 16) as u16));
        }
        for a in addrs {
            assert_eq!(AddrText(a).to_string(), a.to_string());
            assert_eq!(format!("{:>30}", AddrText(a)), format!("{a:>30}"));
            let mut ip = String::new();
            push_ip(&mut ip, a.ip());
            assert_eq!(ip, a.ip().to_canonical().to_string());
        }
        for id in [0, 1, 9, 10, 15, 16, 255, 0x6b0f0e8700001, u64::MAX] {
            assert_eq!(SessionId(id).to_string(), format!("mg-{id:x}"));
        }
        assert_eq!(format!("{:>8}", SessionId(1)), "    mg-1");
    }
}
