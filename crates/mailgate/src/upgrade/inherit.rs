//! The listening sockets that cross a binary upgrade, both ways.
//!
//! Receiving side: the sockets a new process was handed (by the process it replaces, or by
//! systemd socket activation) wait in a pool until the listener code binds an address;
//! [`take`] gives it the inherited socket of that address instead of a new one, so the
//! socket — and the connections queued on it — never close. Matching is by the bound
//! address, so a listener whose address changed in the new config is bound afresh (and a
//! port-0 address, which only the kernel resolves, is never inherited). What nobody took
//! is closed by [`close_unclaimed`] once startup has bound everything.
//!
//! Sending side: every accept loop [`offer`]s its listener (a weak reference: a listener
//! that is removed closes as before); an upgrade hands over the ones still alive.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::net::TcpListener;

/// Inherited sockets not yet taken: (name the sender gave it, socket).
static POOL: Mutex<Vec<(String, std::net::TcpListener)>> = Mutex::new(Vec::new());

/// Listeners in use, offered to a successor: (name, listener).
static OFFERED: Mutex<Vec<(&'static str, Weak<TcpListener>)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Put a socket handed to this process into the pool.
pub fn add(name: String, listener: std::net::TcpListener) {
    lock(&POOL).push((name, listener));
}

/// Sockets waiting in the pool.
pub fn pending() -> usize {
    lock(&POOL).len()
}

/// The inherited socket bound to `addr`, if there is one (needs a tokio runtime).
pub fn take(addr: SocketAddr) -> Option<std::io::Result<TcpListener>> {
    let mut pool = lock(&POOL);
    let i = pool
        .iter()
        .position(|(_, l)| l.local_addr().is_ok_and(|a| a == addr))?;
    let (name, listener) = pool.swap_remove(i);
    drop(pool);
    tracing::info!(%addr, handed_as = %name, "listener inherited");
    Some(
        listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener)),
    )
}

/// Close the inherited sockets that no configured listener took (their address left the
/// config); returns their addresses.
pub fn close_unclaimed() -> Vec<SocketAddr> {
    let left: Vec<_> = lock(&POOL).drain(..).collect();
    left.into_iter()
        .filter_map(|(name, l)| {
            let addr = l.local_addr().ok()?;
            tracing::info!(%addr, handed_as = %name, "inherited listener not in the config: closed");
            Some(addr)
        })
        .collect()
}

/// Offer a listener in use to a future successor (held weakly: dropping the listener
/// withdraws it).
pub fn offer(name: &'static str, listener: &Arc<TcpListener>) {
    let mut offered = lock(&OFFERED);
    offered.retain(|(_, w)| w.strong_count() > 0);
    offered.push((name, Arc::downgrade(listener)));
}

/// The listeners in use now, with their names.
pub fn offered() -> Vec<(&'static str, Arc<TcpListener>)> {
    let mut offered = lock(&OFFERED);
    offered.retain(|(_, w)| w.strong_count() > 0);
    offered
        .iter()
        .filter_map(|(n, w)| Some((*n, w.upgrade()?)))
        .collect()
}

/// The descriptors of `listeners`, in order (borrowed for one send).
pub fn fds<'a>(listeners: &'a [(&'static str, Arc<TcpListener>)]) -> Vec<BorrowedFd<'a>> {
    listeners.iter().map(|(_, l)| l.as_fd()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pooled_socket_is_taken_by_its_address_once() {
        let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std.local_addr().expect("addr");
        add("imap".into(), std);
        let other: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        assert!(take(other).is_none());
        let l = take(addr).expect("pooled").expect("tokio listener");
        assert_eq!(l.local_addr().expect("addr"), addr);
        assert!(take(addr).is_none(), "taken once");
    }

    #[tokio::test]
    async fn offered_listeners_are_withdrawn_when_dropped() {
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
        let addr = l.local_addr().expect("addr");
        offer("pop3", &l);
        let has = |a| {
            offered()
                .iter()
                .any(|(_, l)| l.local_addr().ok() == Some(a))
        };
        assert!(has(addr));
        drop(l);
        assert!(!has(addr));
    }
}
