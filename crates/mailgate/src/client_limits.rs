//! Limits per client address: concurrent sessions (`limits.max_sessions_per_ip`, counted
//! with RAII guards) and failed logins (`limits.max_auth_failures_per_ip`, back-off). Keys
//! are created by traffic, so entries are removed when they reach zero or expire.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use dashmap::DashMap;

/// Counts concurrent sessions per client IP.
#[derive(Debug)]
pub struct PerIp {
    max: u32,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One counted session of an IP; released on drop.
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

    /// Count a session of `ip`, or `None` when it is at its limit.
    pub fn acquire(&self, ip: IpAddr) -> Option<IpGuard<'_>> {
        let ip = ip.to_canonical();
        let mut counts = self.lock();
        let n = counts.entry(ip).or_insert(0);
        if self.max != 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpGuard { owner: self, ip })
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

/// Failed logins per client IP within a window, for back-off (`max_auth_failures_per_ip`).
#[derive(Debug)]
pub struct AuthFailures {
    max: u32,
    window: Duration,
    base_delay: Duration,
    map: DashMap<IpAddr, (u32, tokio::time::Instant)>,
}

/// Longest back-off before a login from an address with many failures is processed.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

impl AuthFailures {
    pub(crate) fn new(max: u32, window: Duration, base_delay: Duration) -> Self {
        AuthFailures {
            max,
            window,
            base_delay,
            map: DashMap::new(),
        }
    }

    /// Count a failed login of `ip`.
    pub fn record(&self, ip: IpAddr) {
        if self.max == 0 {
            return;
        }
        let now = tokio::time::Instant::now();
        let mut e = self.map.entry(ip.to_canonical()).or_insert((0, now));
        if now.duration_since(e.1) > self.window {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
    }

    /// How long to hold a new login of `ip` before processing it: zero below the limit,
    /// then doubling per further failure, at most 15 s.
    pub fn backoff(&self, ip: IpAddr) -> Duration {
        if self.max == 0 {
            return Duration::ZERO;
        }
        let Some(e) = self.map.get(&ip.to_canonical()) else {
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

/// Both per-address limits, as sessions use them.
#[derive(Debug)]
pub struct ClientLimits {
    sessions: PerIp,
    failures: AuthFailures,
}

impl ClientLimits {
    /// The limits of `limits:` in mailgate.yaml.
    pub fn new(l: &mailgate_config::LimitsConfig) -> Self {
        ClientLimits {
            sessions: PerIp::new(l.max_sessions_per_ip),
            failures: AuthFailures::new(
                l.max_auth_failures_per_ip,
                l.auth_failure_window,
                l.auth_failure_delay,
            ),
        }
    }

    /// Count a session of `ip`; `None` over `max_sessions_per_ip`.
    pub fn admit(&self, ip: IpAddr) -> Option<IpGuard<'_>> {
        self.sessions.acquire(ip)
    }

    /// Count a failed login of `ip`.
    pub fn failed_login(&self, ip: IpAddr) {
        self.failures.record(ip)
    }

    /// How long to hold a new login of `ip` back.
    pub fn backoff(&self, ip: IpAddr) -> Duration {
        self.failures.backoff(ip)
    }

    /// Forget expired failure windows.
    pub fn prune(&self) {
        self.failures.prune()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_guards_count_and_release() {
        let limits = PerIp::new(2);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        let a = limits.acquire(ip).expect("first");
        let _b = limits
            .acquire(mapped)
            .expect("second (same address, v4-mapped)");
        assert!(limits.acquire(ip).is_none(), "third is over the limit");
        assert!(limits.acquire("192.0.2.2".parse().expect("ip")).is_some());
        drop(a);
        assert!(limits.acquire(ip).is_some(), "released on drop");
        assert!(PerIp::new(0).acquire(ip).is_some(), "0 = unlimited");
    }

    #[tokio::test(start_paused = true)]
    async fn back_off_grows_after_the_limit_and_expires_with_the_window() {
        let f = AuthFailures::new(3, Duration::from_secs(60), Duration::from_secs(2));
        let ip: IpAddr = "198.51.100.7".parse().expect("ip");
        for _ in 0..2 {
            f.record(ip);
        }
        assert_eq!(f.backoff(ip), Duration::ZERO, "below the limit");
        f.record(ip);
        assert_eq!(f.backoff(ip), Duration::from_secs(2));
        f.record(ip);
        assert_eq!(f.backoff(ip), Duration::from_secs(4));
        for _ in 0..10 {
            f.record(ip);
        }
        assert_eq!(f.backoff(ip), MAX_BACKOFF, "capped");
        assert_eq!(
            f.backoff("198.51.100.8".parse().expect("ip")),
            Duration::ZERO
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(f.backoff(ip), Duration::ZERO, "window over");
        f.prune();
        assert!(f.map.is_empty(), "expired entries pruned");
        let off = AuthFailures::new(0, Duration::from_secs(60), Duration::from_secs(2));
        off.record(ip);
        assert_eq!(off.backoff(ip), Duration::ZERO, "0 = off");
    }
}
