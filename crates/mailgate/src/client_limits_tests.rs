use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn per_ip_guards_count_and_release() {
    let limits = PerIp::new(2);
    let a = limits
        .acquire(client_key(ip("192.0.2.1"), 64))
        .expect("first");
    let _b = limits
        .acquire(client_key(ip("::ffff:192.0.2.1"), 64))
        .expect("second (same address, v4-mapped)");
    assert!(
        limits.acquire(client_key(ip("192.0.2.1"), 64)).is_none(),
        "third is over the limit"
    );
    assert!(limits.acquire(ip("192.0.2.2")).is_some());
    drop(a);
    assert!(
        limits.acquire(ip("192.0.2.1")).is_some(),
        "released on drop"
    );
    assert!(
        PerIp::new(0).acquire(ip("192.0.2.1")).is_some(),
        "0 = unlimited"
    );
}

#[test]
fn ipv6_clients_count_by_prefix() {
    assert_eq!(
        client_key(ip("2001:db8:1:2:aaaa::1"), 64),
        ip("2001:db8:1:2::")
    );
    assert_eq!(
        client_key(ip("2001:db8:1:2:ffff::9"), 64),
        ip("2001:db8:1:2::")
    );
    assert_ne!(client_key(ip("2001:db8:1:3::1"), 64), ip("2001:db8:1:2::"));
    assert_eq!(client_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
    assert_eq!(client_key(ip("2001:db8:1:2::1"), 48), ip("2001:db8:1::"));
    assert_eq!(client_key(ip("198.51.100.7"), 64), ip("198.51.100.7"));
    let l = LimitsConfig {
        max_sessions_per_ip: 2,
        ..LimitsConfig::default()
    };
    let limits = ClientLimits::new(&l, None);
    let _a = limits.admit(ip("2001:db8:1:2::1")).expect("1");
    let _b = limits.admit(ip("2001:db8:1:2::2")).expect("2");
    assert!(
        limits.admit(ip("2001:db8:1:2::3")).is_none(),
        "the /64 is one client"
    );
    assert!(limits.admit(ip("2001:db8:1:3::1")).is_some(), "another /64");
}

#[tokio::test(start_paused = true)]
async fn back_off_grows_after_the_limit_and_expires_with_the_window() {
    let f = AuthFailures::new(3, Duration::from_secs(60), Duration::from_secs(2));
    let a = ip("198.51.100.7");
    for _ in 0..2 {
        f.record(a);
    }
    assert_eq!(f.backoff(&a), Duration::ZERO, "below the limit");
    f.record(a);
    assert_eq!(f.backoff(&a), Duration::from_secs(2));
    f.record(a);
    assert_eq!(f.backoff(&a), Duration::from_secs(4));
    for _ in 0..10 {
        f.record(a);
    }
    assert_eq!(f.backoff(&a), MAX_BACKOFF, "capped");
    assert_eq!(f.backoff(&ip("198.51.100.8")), Duration::ZERO);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(f.backoff(&a), Duration::ZERO, "window over");
    f.prune();
    assert!(f.map.is_empty(), "expired entries pruned");
    let off = AuthFailures::new(0, Duration::from_secs(60), Duration::from_secs(2));
    off.record(a);
    assert_eq!(off.backoff(&a), Duration::ZERO, "0 = off");
}

/// Password spraying: one user tried from many addresses is held back, other users and the
/// addresses' other logins are not.
#[tokio::test(start_paused = true)]
async fn failed_logins_of_one_user_across_addresses_back_off_that_user() {
    let l = LimitsConfig {
        max_auth_failures_per_ip: 10,
        max_auth_failures_per_user: 3,
        ..LimitsConfig::default()
    };
    let limits = ClientLimits::new(&l, None);
    for i in 0..3 {
        limits.failed_login(ip(&format!("203.0.113.{i}")), "alice@example.com");
    }
    assert!(limits.backoff(ip("203.0.113.99"), "alice@example.com") > Duration::ZERO);
    assert_eq!(
        limits.backoff(ip("203.0.113.99"), "bob@example.com"),
        Duration::ZERO
    );
}

#[test]
fn process_caps_and_the_fd_reserve() {
    let l = LimitsConfig {
        max_connections: 0,
        max_tls_handshakes: 1,
        max_preauth_sessions: 2,
        ..LimitsConfig::default()
    };
    let limits = ClientLimits::new(&l, Some(1024));
    assert_eq!(limits.max_connections(), (1024 - FD_RESERVE as u32) / 2);
    let h = limits.handshake().expect("one handshake");
    assert!(limits.handshake().is_none(), "at the handshake cap");
    drop(h);
    assert!(limits.handshake().is_some(), "released");
    let _p1 = limits.preauth().expect("1");
    let _p2 = limits.preauth().expect("2");
    assert!(limits.preauth().is_none());
    let l = LimitsConfig {
        max_connections: 10_000,
        ..LimitsConfig::default()
    };
    assert_eq!(ClientLimits::new(&l, Some(20_000)).max_connections(), 9_872);
    assert_eq!(ClientLimits::new(&l, None).max_connections(), 10_000);
    let two = LimitsConfig {
        max_connections: 2,
        ..LimitsConfig::default()
    };
    let limits = ClientLimits::new(&two, None);
    let _a = limits.connection().expect("a");
    let _b = limits.connection().expect("b");
    assert!(limits.connection().is_none());
}

#[test]
fn a_reload_changes_the_caps_and_keeps_the_counts() {
    let l = LimitsConfig {
        max_sessions_per_ip: 2,
        max_preauth_sessions: 1,
        max_connections: 100,
        ..LimitsConfig::default()
    };
    let limits = ClientLimits::new(&l, Some(1024));
    let _a = limits.admit(ip("192.0.2.1")).expect("1");
    let _b = limits.admit(ip("192.0.2.1")).expect("2");
    let p = limits.preauth().expect("preauth");
    assert!(limits.admit(ip("192.0.2.1")).is_none(), "at the cap of 2");
    limits.apply(&LimitsConfig {
        max_sessions_per_ip: 3,
        max_preauth_sessions: 0,
        max_connections: 5_000,
        ..LimitsConfig::default()
    });
    let _c = limits
        .admit(ip("192.0.2.1"))
        .expect("the raised cap admits a third");
    assert!(
        limits.admit(ip("192.0.2.1")).is_none(),
        "the two held still count"
    );
    assert!(limits.preauth().is_some(), "0 = unlimited after the reload");
    assert_eq!(
        limits.max_connections(),
        (1024 - FD_RESERVE as u32) / 2,
        "still below the fd limit"
    );
    drop(p);
    limits.apply(&LimitsConfig {
        max_sessions_per_ip: 1,
        ..LimitsConfig::default()
    });
    assert!(
        limits.admit(ip("192.0.2.2")).is_some(),
        "a new address: 1 allowed"
    );
    assert!(
        limits.admit(ip("192.0.2.1")).is_none(),
        "lowered below the 3 held"
    );
}

#[tokio::test(start_paused = true)]
async fn a_handshake_over_the_cap_waits_for_a_slot_until_its_deadline() {
    use std::sync::Arc;
    use tokio::time::{Instant, sleep};
    let l = LimitsConfig {
        max_tls_handshakes: 1,
        ..LimitsConfig::default()
    };
    let limits = Arc::new(ClientLimits::new(&l, None));
    let held = limits.handshake().expect("the only slot");
    // Nothing frees the slot: the waiter gives up at its deadline.
    let start = Instant::now();
    assert!(
        limits
            .handshake_within(start + Duration::from_secs(2))
            .await
            .is_none()
    );
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    // Released while one waits: the waiter gets it, before its deadline.
    let waiter = {
        let limits = limits.clone();
        tokio::spawn(async move {
            let got = limits
                .handshake_within(Instant::now() + Duration::from_secs(10))
                .await
                .is_some();
            (got, Instant::now())
        })
    };
    sleep(Duration::from_secs(1)).await;
    let released_at = Instant::now();
    drop(held);
    let (got, at) = waiter.await.expect("waiter");
    assert!(got, "the released slot goes to the waiter");
    assert_eq!(at, released_at);
    // Unlimited (0): never waits.
    let free = ClientLimits::new(
        &LimitsConfig {
            max_tls_handshakes: 0,
            ..LimitsConfig::default()
        },
        None,
    );
    let _a = free.handshake().expect("a");
    assert!(free.handshake_within(Instant::now()).await.is_some());
}
