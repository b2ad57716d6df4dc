//! `resolver:` in `mailgate.yaml`: how backend host names are resolved — which DNS servers
//! (default: the system's `/etc/resolv.conf`) and how long a backend's last good addresses
//! stand in for DNS once their TTL has run out and DNS fails.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The DNS port a name server without `:PORT` is asked on.
pub const DNS_PORT: u16 = 53;

/// `resolver:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverConfig {
    /// DNS servers to ask (UDP, then TCP for truncated answers), `IP` or `IP:PORT`
    /// (`[v6]:PORT`); empty: the system's `/etc/resolv.conf`.
    #[serde(deserialize_with = "nameservers")]
    pub nameservers: Vec<SocketAddr>,
    /// When DNS fails, a backend's last good addresses are still used until this long after
    /// their TTL ran out; then its logins are refused (`NO [UNAVAILABLE]`) until DNS answers
    /// again. `0s`: never past the TTL.
    #[serde(with = "crate::duration")]
    pub keep_last_good: Duration,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            nameservers: Vec::new(),
            keep_last_good: Duration::from_secs(3600),
        }
    }
}

/// `IP`, `IP:PORT` or `[v6]:PORT` → the server's address (port 53 without one).
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .map_err(|_| format!("name server \"{s}\" is not IP or IP:PORT"))
}

fn nameservers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_nameserver(s).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_forms() {
        let a = |s: &str| parse_nameserver(s).map(|a| a.to_string());
        assert_eq!(a("127.0.0.1:5353").as_deref(), Ok("127.0.0.1:5353"));
        assert_eq!(a("127.0.0.1").as_deref(), Ok("127.0.0.1:53"));
        assert_eq!(a("::1").as_deref(), Ok("[::1]:53"));
        assert_eq!(a("[::1]").as_deref(), Ok("[::1]:53"));
        assert_eq!(a("[::1]:5300").as_deref(), Ok("[::1]:5300"));
        for bad in ["", "dns.example", "127.0.0.1:99999", "1.2.3"] {
            assert!(parse_nameserver(bad).is_err(), "{bad:?}");
        }
    }
}
