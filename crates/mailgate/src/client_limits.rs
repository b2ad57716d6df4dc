//! Limits on what clients may hold: per address (concurrent sessions, failed-login back-off,
//! IPv6 clients counted by their /64 or a configured prefix), per user across addresses
//! (password spraying), and for the whole process (connections, TLS handshakes, sessions
//! before login). Every counted resource is an RAII guard. Keys are created by traffic, so
//! entries are removed when they reach zero or expire.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use mailgate_config::LimitsConfig;
use tokio::sync::Notify;
use tokio::time::Instant;

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
    max: AtomicU32,
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
            max: AtomicU32::new(max),
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
        let max = self.max.load(Ordering::Relaxed);
        if max != 0 && *n >= max {
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
    max: AtomicU32,
    window: Millis,
    base_delay: Millis,
    map: DashMap<K, (u32, tokio::time::Instant)>,
}

/// Longest back-off before a login with many failures behind it is processed.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

impl<K: Hash + Eq + Clone> AuthFailures<K> {
    pub(crate) fn new(max: u32, window: Duration, base_delay: Duration) -> Self {
        AuthFailures {
            max: AtomicU32::new(max),
            window: Millis::new(window),
            base_delay: Millis::new(base_delay),
            map: DashMap::new(),
        }
    }

    /// Count a failed login of `key`.
    pub fn record(&self, key: K) {
        if self.max.load(Ordering::Relaxed) == 0 {
            return;
        }
        let now = tokio::time::Instant::now();
        let mut e = self.map.entry(key).or_insert((0, now));
        if now.duration_since(e.1) > self.window.get() {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
    }

    /// How long to hold a new login of `key` before processing it: zero below the limit,
    /// then doubling per further failure, at most 15 s.
    pub fn backoff(&self, key: &K) -> Duration {
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 {
            return Duration::ZERO;
        }
        let Some(e) = self.map.get(key) else {
            return Duration::ZERO;
        };
        if e.1.elapsed() > self.window.get() || e.0 < max {
            return Duration::ZERO;
        }
        let excess = (e.0 - max).min(8);
        let base = self.base_delay.get().max(Duration::from_millis(250));
        (base * 2u32.pow(excess)).min(MAX_BACKOFF)
    }

    /// Forget windows that ended (called periodically: keys are created by traffic).
    pub fn prune(&self) {
        let window = self.window.get();
        self.map.retain(|_, (_, start)| start.elapsed() <= window);
    }
}

/// A process-wide count with a cap (0 = none).
#[derive(Debug)]
struct Cap {
    max: AtomicU32,
    now: AtomicU32,
    /// Woken when a unit is released (for [`Cap::take_within`]).
    released: Notify,
}

impl Cap {
    fn new(max: u32) -> Self {
        Cap {
            max: AtomicU32::new(max),
            now: AtomicU32::new(0),
            released: Notify::new(),
        }
    }

    /// A unit, waiting until `deadline` for one to be released when the cap is reached.
    async fn take_within(&self, deadline: Instant) -> Option<CapGuard<'_>> {
        loop {
            // Registered before the attempt, so a release between the two is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(g) = self.take() {
                return Some(g);
            }
            tokio::time::timeout_at(deadline, released).await.ok()?;
        }
    }

    fn take(&self) -> Option<CapGuard<'_>> {
        let n = self.now.fetch_add(1, Ordering::AcqRel);
        let max = self.max.load(Ordering::Relaxed);
        if max != 0 && n >= max {
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
        self.0.released.notify_one();
    }
}

/// Every client limit, as sessions use them.
#[derive(Debug)]
pub struct ClientLimits {
    prefix: AtomicU8,
    /// The connection cap the fd limit allows (`None`: no fd limit known).
    by_fds: Option<u32>,
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
        ClientLimits {
            prefix: AtomicU8::new(l.ipv6_prefix),
            by_fds,
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
            connections: Cap::new(connection_cap(l.max_connections, by_fds)),
            handshakes: Cap::new(l.max_tls_handshakes),
            preauth: Cap::new(l.max_preauth_sessions),
        }
    }

    /// The connection cap in force (0 = none).
    pub fn max_connections(&self) -> u32 {
        self.connections.max.load(Ordering::Relaxed)
    }

    /// Apply a reloaded `limits:` (caps, windows, the IPv6 prefix). Counts in progress are
    /// kept: a cap lowered below the current count refuses new ones until enough end.
    pub fn apply(&self, l: &LimitsConfig) {
        self.prefix.store(l.ipv6_prefix, Ordering::Relaxed);
        self.sessions
            .max
            .store(l.max_sessions_per_ip, Ordering::Relaxed);
        for (f, max) in [
            (&self.failures.max, l.max_auth_failures_per_ip),
            (&self.user_failures.max, l.max_auth_failures_per_user),
        ] {
            f.store(max, Ordering::Relaxed);
        }
        self.failures.window.set(l.auth_failure_window);
        self.failures.base_delay.set(l.auth_failure_delay);
        self.user_failures.window.set(l.auth_failure_window);
        self.user_failures.base_delay.set(l.auth_failure_delay);
        let connections = connection_cap(l.max_connections, self.by_fds);
        self.connections.max.store(connections, Ordering::Relaxed);
        self.handshakes
            .max
            .store(l.max_tls_handshakes, Ordering::Relaxed);
        self.preauth
            .max
            .store(l.max_preauth_sessions, Ordering::Relaxed);
    }

    fn prefix(&self) -> u8 {
        self.prefix.load(Ordering::Relaxed)
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

    /// A TLS handshake slot under `max_tls_handshakes`, waiting until `deadline` when
    /// they are all taken (a reconnect storm queues for the CPU instead of being reset;
    /// the client's ClientHello waits in the socket). `None` when none freed in time.
    pub async fn handshake_within(&self, deadline: Instant) -> Option<CapGuard<'_>> {
        self.handshakes.take_within(deadline).await
    }

    /// Count a session of `ip` (by its key); `None` over `max_sessions_per_ip`.
    pub fn admit(&self, ip: IpAddr) -> Option<IpGuard<'_>> {
        self.sessions.acquire(client_key(ip, self.prefix()))
    }

    /// Count a failed login of `user` from `ip`.
    pub fn failed_login(&self, ip: IpAddr, user: &str) {
        self.failures.record(client_key(ip, self.prefix()));
        self.user_failures.record(user.to_string());
    }

    /// How long to hold a new login of `user` from `ip` back: the longer of the address's
    /// and the user's back-off.
    pub fn backoff(&self, ip: IpAddr, user: &str) -> Duration {
        let by_ip = self.failures.backoff(&client_key(ip, self.prefix()));
        let by_user = self.user_failures.backoff(&user.to_string());
        by_ip.max(by_user)
    }

    /// Forget expired failure windows.
    pub fn prune(&self) {
        self.failures.prune();
        self.user_failures.prune();
    }
}

/// `max_connections`, kept below what the fd limit allows.
fn connection_cap(configured: u32, by_fds: Option<u32>) -> u32 {
    match (configured, by_fds) {
        (0, Some(f)) => f.max(1),
        (c, Some(f)) => c.min(f.max(1)),
        (c, None) => c,
    }
}

/// A duration that a reload may change, in milliseconds.
#[derive(Debug)]
struct Millis(AtomicU64);

impl Millis {
    fn new(d: Duration) -> Self {
        Millis(AtomicU64::new(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        ))
    }

    fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, d: Duration) {
        self.0.store(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
#[path = "client_limits_tests.rs"]
mod tests;
