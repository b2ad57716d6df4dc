//! The loop guard: mailgate never dials one of its own listeners.
//!
//! A backend whose address is mailgate's own listener would make every login routed there
//! (and every probe of it) open one more session on mailgate, which routes it again: a
//! loop that ends only when file descriptors run out. The backend client knows the
//! addresses its process listens on ([`OwnListeners`], set when the listeners are bound)
//! and refuses, before connecting, every resolved address that reaches one of them; a
//! login then gets `NO [UNAVAILABLE]` / `-ERR [SYS/TEMP]`. `mailgate check`, startup and
//! every reload also report the backends whose literal address (an IP, or `localhost`)
//! is one of the listeners, without DNS.
//!
//! "Reaches" means: the same port, and the same address, or a wildcard listener
//! (`0.0.0.0` / `::`) and an address of this host (loopback, unspecified, or one the
//! kernel routes locally). Listeners are IPv6-only sockets, so families never cross.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use arc_swap::ArcSwap;
use mailgate_config::RoutingTable;

/// One listener: its config name (`imap`, `pop3s`, ...) and address.
pub type Listener = (&'static str, SocketAddr);

/// The addresses this process listens on; empty until the listeners are bound.
#[derive(Debug, Default)]
pub struct OwnListeners {
    addrs: ArcSwap<Vec<Listener>>,
}

impl OwnListeners {
    /// Replace the set (after binding, and when listeners are handed over).
    pub fn set(&self, listeners: Vec<Listener>) {
        self.addrs.store(Arc::new(listeners));
    }

    /// The current set.
    pub fn get(&self) -> Arc<Vec<Listener>> {
        self.addrs.load_full()
    }
}

/// The listener a connection to `target` would reach, if any.
pub fn reached(listeners: &[Listener], target: SocketAddr) -> Option<Listener> {
    let mut ip = target.ip().to_canonical();
    // Connecting to the unspecified address reaches the loopback address.
    if ip.is_unspecified() {
        ip = match ip {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
    }
    let mut this_host = None;
    listeners.iter().copied().find(|(_, l)| {
        let lip = l.ip().to_canonical();
        l.port() == target.port()
            && lip.is_ipv4() == ip.is_ipv4()
            && (lip == ip
                || (lip.is_unspecified() && *this_host.get_or_insert_with(|| is_this_host(ip))))
    })
}

/// Is `ip` an address of this host? Loopback is; for others, ask the kernel which source
/// address it would use towards `ip` (a UDP `connect` sends nothing): a local address is
/// its own source.
fn is_this_host(ip: IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    let any: SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let Ok(socket) = UdpSocket::bind(any) else {
        return false;
    };
    socket.connect((ip, 9)).is_ok() && socket.local_addr().is_ok_and(|a| a.ip() == ip)
}

/// A backend whose literal address is one of mailgate's own listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loop {
    /// The backend's name.
    pub backend: String,
    /// The port key: `imap_port` or `pop3_port`.
    pub key: &'static str,
    /// The backend address.
    pub target: SocketAddr,
    /// The listener it reaches.
    pub listener: Listener,
}

impl Loop {
    /// For people: what is wrong and what mailgate does about it.
    pub fn message(&self) -> String {
        format!(
            "{} is mailgate's own listener listen.{} ({}): logins routed to this backend \
             would reach mailgate again, so they are refused (NO [UNAVAILABLE]) without \
             dialling",
            self.target, self.listener.0, self.listener.1
        )
    }
}

/// The addresses a host names without DNS: an IP literal, or `localhost` (RFC 6761).
fn literal_ips(host: &str) -> Vec<IpAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return vec![ip];
    }
    if bare.trim_end_matches('.').eq_ignore_ascii_case("localhost") {
        return vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    }
    Vec::new()
}

/// Every backend of `table` whose literal address reaches one of `listeners` (one entry
/// per backend and port). Host names other than `localhost` are not resolved: the dial
/// guard catches those.
pub fn literal_loops(table: &RoutingTable, listeners: &[Listener]) -> Vec<Loop> {
    let mut out = Vec::new();
    for b in table.backends() {
        let ips = literal_ips(&b.host);
        for (key, port) in [("imap_port", b.imap_port), ("pop3_port", b.pop3_port)] {
            let Some(port) = port else { continue };
            let hit = ips.iter().find_map(|ip| {
                let target = SocketAddr::new(*ip, port);
                reached(listeners, target).map(|l| (target, l))
            });
            if let Some((target, listener)) = hit {
                out.push(Loop {
                    backend: b.name.clone(),
                    key,
                    target,
                    listener,
                });
            }
        }
    }
    out
}

/// The 1-based line of `backends.<backend>.<key>` in a block-style routing file, if it
/// can be found (for `mailgate check`; `None` leaves the key path to say where).
pub fn line_of(text: &str, backend: &str, key: &str) -> Option<usize> {
    let key_of = |line: &str| -> Option<String> {
        let t = line.trim_start();
        let (k, _) = t.split_once(':')?;
        Some(k.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
    };
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut section = false;
    let mut entry: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let depth = indent(line);
        if depth == 0 {
            section = key_of(line).as_deref() == Some("backends");
            entry = None;
            continue;
        }
        if !section {
            continue;
        }
        match entry {
            Some(d) if depth > d => {
                if key_of(line).as_deref() == Some(key) {
                    return Some(i + 1);
                }
            }
            _ => entry = (key_of(line).as_deref() == Some(backend)).then_some(depth),
        }
    }
    None
}

/// The listeners `mailgate.yaml` names (for `mailgate check`, before anything is bound).
pub fn configured(listen: &mailgate_config::Listen) -> Vec<Listener> {
    [
        ("imap", listen.imap),
        ("imaps", listen.imaps),
        ("pop3", listen.pop3),
        ("pop3s", listen.pop3s),
    ]
    .into_iter()
    .filter_map(|(name, addr)| Some((name, addr?)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn same_address_and_port_is_a_loop() {
        let own = [("imap", sa("127.0.0.1:1143")), ("pop3", sa("[::1]:1110"))];
        assert_eq!(reached(&own, sa("127.0.0.1:1143")), Some(own[0]));
        assert_eq!(reached(&own, sa("[::1]:1110")), Some(own[1]));
        // IPv4-mapped IPv6 reaches the IPv4 listener.
        assert_eq!(reached(&own, sa("[::ffff:127.0.0.1]:1143")), Some(own[0]));
        // The unspecified address is this host's loopback.
        assert_eq!(reached(&own, sa("0.0.0.0:1143")), Some(own[0]));
        // Another port, another loopback address, another family: not mailgate.
        assert_eq!(reached(&own, sa("127.0.0.1:1144")), None);
        assert_eq!(reached(&own, sa("127.0.0.2:1143")), None);
        assert_eq!(reached(&own, sa("[::1]:1143")), None);
        assert_eq!(reached(&own, sa("192.0.2.1:1143")), None);
    }

    #[test]
    fn a_wildcard_listener_is_reached_through_any_local_address() {
        let own = [("imap", sa("0.0.0.0:1143"))];
        assert_eq!(reached(&own, sa("127.0.0.1:1143")), Some(own[0]));
        assert_eq!(reached(&own, sa("127.0.0.77:1143")), Some(own[0]));
        // TEST-NET addresses are never assigned to this machine.
        assert_eq!(reached(&own, sa("192.0.2.1:1143")), None);
        assert_eq!(reached(&own, sa("127.0.0.1:1110")), None);
        assert_eq!(reached(&own, sa("[::1]:1143")), None);
        let own6 = [("imap", sa("[::]:1143"))];
        assert_eq!(reached(&own6, sa("[::1]:1143")), Some(own6[0]));
        assert_eq!(reached(&own6, sa("[2001:db8::1]:1143")), None);
    }

    #[test]
    fn the_kernel_names_this_hosts_own_addresses() {
        assert!(is_this_host("127.0.0.1".parse().expect("ip")));
        assert!(!is_this_host("192.0.2.1".parse().expect("ip")));
        // Whatever source address the kernel picks towards an outside address is local.
        let probe = UdpSocket::bind("0.0.0.0:0").expect("bind");
        if probe.connect("192.0.2.1:9").is_ok() {
            let mine = probe.local_addr().expect("addr").ip();
            assert!(is_this_host(mine), "{mine} is this host's");
        }
    }

    #[test]
    fn literal_loops_name_backend_and_port() {
        let text = "backends:\n  self:\n    host: 127.0.0.1\n    imap_port: 1143\n    pop3_port: 2110\n  \
                    named:\n    host: LocalHost.\n    pop3_port: 1110\n  other:\n    host: 127.0.0.1\n    imap_port: 10143\n  \
                    dns:\n    host: mail.example.net\n    imap_port: 1143\ndefault: other\n";
        let table = RoutingTable::parse(text, std::path::Path::new("routing.yaml"))
            .expect("valid")
            .table;
        let own = [("imap", sa("127.0.0.1:1143")), ("pop3", sa("0.0.0.0:1110"))];
        let loops = literal_loops(&table, &own);
        let got: Vec<(&str, &str, SocketAddr)> = loops
            .iter()
            .map(|l| (l.backend.as_str(), l.key, l.target))
            .collect();
        assert_eq!(
            got,
            vec![
                ("self", "imap_port", sa("127.0.0.1:1143")),
                ("named", "pop3_port", sa("127.0.0.1:1110")),
            ]
        );
        assert!(loops[0].message().contains("listen.imap (127.0.0.1:1143)"));
        assert_eq!(line_of(text, "self", "imap_port"), Some(4));
        assert_eq!(line_of(text, "named", "pop3_port"), Some(8));
        assert_eq!(line_of(text, "dns", "pop3_port"), None);
        let quoted = "# c\nbackends:\n  \"a.b\":\n    host: x\n\n    \"imap_port\": 1\n";
        assert_eq!(line_of(quoted, "a.b", "imap_port"), Some(6));
    }
}
