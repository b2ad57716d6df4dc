//! Limits on what clients may hold: per address (concurrent sessions, failed-login back-off,
//! IPv6 clients counted by their /64 or a configured prefix), per user across addresses
//! (password spraying), and for the whole process (connections, TLS handshakes, sessions
//! before login). Every counted resource is an RAII guard. Keys are created by traffic, so
//! entries are removed when they reach zero or expire.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use mailgate_config::LimitsConfig;

/// File descriptors kept free for the admin listener, backend dials, probes, DNS and logs
/// when the connection cap is derived from the process's fd limit.
pub const FD_RESERVE: u64 = 256;

/// The key per-address limits count by: the address itself for IPv4 (and IPv4-mapped
/// IPv6), the first `prefix` bits for IPv6.
pub fn client_key(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u32::from(prefix.min(128));
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// Counts concurrent sessions per client key.
#[derive(Debug)]
pub struct PerIp {
    max: u32,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One counted session of an address; released on drop.
#[derive(Debug)]
pub struct IpGuard<'a> {
    owner: &'a PerIp,
    ip: IpAddr,
}

impl PerIp {
    pub(crate) fn new(max: u32) -> Self {
        PerIp {
            max,
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        match self.counts.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Count a session of `key`, or `None` when it is at its limit.
    pub fn acquire(&self, key: IpAddr) -> Option<IpGuard<'_>> {
        let mut counts = self.lock();
        let n = counts.entry(key).or_insert(0);
        if self.max != 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpGuard {
            owner: self,
            ip: key,
        })
    }
}

impl Drop for IpGuard<'_> {
    fn drop(&mut self) {
        let mut counts = self.owner.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Failed logins per key (an address, or a user) within a window, for back-off.
#[derive(Debug)]
pub struct AuthFailures<K: Hash + Eq> {
    max: u32,
    window: Duration,
    base_delay: Duration,
    map: DashMap<K, (u32, tokio::time::Instant)>,
}

/// Longest back-off before a login with many failures behind it is processed.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

impl<K: Hash + Eq + Clone> AuthFailures<K> {
    pub(crate) fn new(max: u32, window: Duration, base_delay: Duration) -> Self {
        AuthFailures {
            max,
            window,
            base_delay,
            map: DashMap::new(),
        }
    }

    /// Count a failed login of `key`.
    pub fn record(&self, key: K) {
        if self.max == 0 {
            return;
        }
        let now = tokio::time::Instant::now();
        let mut e = self.map.entry(key).or_insert((0, now));
        if now.duration_since(e.1) > self.window {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
    }

    /// How long to hold a new login of `key` before processing it: zero below the limit,
    /// then doubling per further failure, at most 15 s.
    pub fn backoff(&self, key: &K) -> Duration {
        if self.max == 0 {
            return Duration::ZERO;
        }
        let Some(e) = self.map.get(key) else {
            return Duration::ZERO;
        };
        if e.1.elapsed() > self.window || e.0 < self.max {
            return Duration::ZERO;
        }
        let excess = (e.0 - self.max).min(8);
        let base = self.base_delay.max(Duration::from_millis(250));
        (base * 2u32.pow(excess)).min(MAX_BACKOFF)
    }

    /// Forget windows that ended (called periodically: keys are created by traffic).
    pub fn prune(&self) {
        let window = self.window;
        self.map.retain(|_, (_, start)| start.elapsed() <= window);
    }
}

/// A process-wide count with a cap (0 = none).
#[derive(Debug)]
struct Cap {
    max: u32,
    now: AtomicU32,
}

impl Cap {
    fn new(max: u32) -> Self {
        Cap {
            max,
            now: AtomicU32::new(0),
        }
    }

    fn take(&self) -> Option<CapGuard<'_>> {
        let n = self.now.fetch_add(1, Ordering::AcqRel);
        if self.max != 0 && n >= self.max {
            self.now.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(CapGuard(self))
    }
}

/// One unit of a process-wide cap; released on drop.
#[derive(Debug)]
pub struct CapGuard<'a>(&'a Cap);

impl Drop for CapGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every client limit, as sessions use them.
#[derive(Debug)]
pub struct ClientLimits {
    prefix: u8,
    sessions: PerIp,
    failures: AuthFailures<IpAddr>,
    user_failures: AuthFailures<String>,
    connections: Cap,
    handshakes: Cap,
    preauth: Cap,
}

impl ClientLimits {
    /// The limits of `limits:` in mailgate.yaml. With `fd_limit` (the process's open-file
    /// limit) the connection cap is also kept below it, [`FD_RESERVE`] descriptors and two
    /// per session (client and backend) considered, so that at the cap the admin listener,
    /// probes and backend dials still get descriptors.
    pub fn new(l: &LimitsConfig, fd_limit: Option<u64>) -> Self {
        let by_fds =
            fd_limit.map(|n| (n.saturating_sub(FD_RESERVE) / 2).min(u64::from(u32::MAX)) as u32);
        let connections = match (l.max_connections, by_fds) {
            (0, Some(f)) => f.max(1),
            (c, Some(f)) => c.min(f.max(1)),
            (c, None) => c,
        };
        ClientLimits {
            prefix: l.ipv6_prefix,
            sessions: PerIp::new(l.max_sessions_per_ip),
            failures: AuthFailures::new(
                l.max_auth_failures_per_ip,
                l.auth_failure_window,
                l.auth_failure_delay,
            ),
            user_failures: AuthFailures::new(
                l.max_auth_failures_per_user,
                l.auth_failure_window,
                l.auth_failure_delay,
            ),
            connections: Cap::new(connections),
            handshakes: Cap::new(l.max_tls_handshakes),
            preauth: Cap::new(l.max_preauth_sessions),
        }
    }

    /// The connection cap in force (0 = none).
    pub fn max_connections(&self) -> u32 {
        self.connections.max
    }

    /// A connection, under `max_connections`.
    pub fn connection(&self) -> Option<CapGuard<'_>> {
        self.connections.take()
    }

    /// A session before login, under `max_preauth_sessions`.
    pub fn preauth(&self) -> Option<CapGuard<'_>> {
        self.preauth.take()
    }

    /// A TLS handshake in progress, under `max_tls_handshakes`.
    pub fn handshake(&self) -> Option<CapGuard<'_>> {
        self.handshakes.take()
    }

    /// Count a session of `ip` (by its key); `None` over `max_sessions_per_ip`.
    pub fn admit(&self, ip: IpAddr) -> Option<IpGuard<'_>> {
        self.sessions.acquire(client_key(ip, self.prefix))
    }

    /// Count a failed login of `user` from `ip`.
    pub fn failed_login(&self, ip: IpAddr, user: &str) {
        self.failures.record(client_key(ip, self.prefix));
        self.user_failures.record(user.to_string());
    }

    /// How long to hold a new login of `user` from `ip` back: the longer of the address's
    /// and the user's back-off.
    pub fn backoff(&self, ip: IpAddr, user: &str) -> Duration {
        let by_ip = self.failures.backoff(&client_key(ip, self.prefix));
        let by_user = self.user_failures.backoff(&user.to_string());
        by_ip.max(by_user)
    }

    /// Forget expired failure windows.
    pub fn prune(&self) {
        self.failures.prune();
        self.user_failures.prune();
    }
}

#[cfg(test)]
#[path = "client_limits_tests.rs"]
mod tests;
