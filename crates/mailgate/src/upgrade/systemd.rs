//! systemd: state notifications (`sd_notify` without libsystemd: one datagram to
//! `$NOTIFY_SOCKET`), the watchdog interval, and sockets passed by socket activation
//! (`LISTEN_FDS`, `LISTEN_FDNAMES`).
//!
//! What mailgate sends: `READY=1` once it serves; `RELOADING=1` with `MONOTONIC_USEC=` when a
//! SIGHUP reload starts and `READY=1` when it is done (the `Type=notify-reload` protocol);
//! `STOPPING=1` when shutdown begins; `WATCHDOG=1` at half of `WATCHDOG_USEC`; and, from the
//! old process of a binary upgrade, `MAINPID=` naming the new one.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The service manager's notification socket (`$NOTIFY_SOCKET`).
#[derive(Debug, Clone)]
pub struct Notifier {
    addr: SocketAddr,
    shown: String,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`: a path, or `@name` for the abstract namespace. `None` when
    /// not started by a service manager that listens.
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var("NOTIFY_SOCKET").ok()?;
        Notifier::at(&value)
            .map_err(|e| tracing::warn!(socket = %value, error = %e, "NOTIFY_SOCKET unusable"))
            .ok()
    }

    /// A notifier for the socket named like `$NOTIFY_SOCKET`.
    pub fn at(value: &str) -> io::Result<Notifier> {
        let addr = if let Some(name) = value.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if value.starts_with('/') {
            SocketAddr::from_pathname(value)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither a path nor @abstract (vsock is not supported)",
            ));
        };
        Ok(Notifier {
            addr,
            shown: value.to_string(),
        })
    }

    /// Send one notification (`KEY=value` lines).
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &self.addr)?;
        Ok(())
    }

    /// [`Notifier::notify`], logging a failure instead of returning it.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.notify(state) {
            tracing::warn!(socket = %self.shown, error = %e, "systemd notification failed");
        }
    }
}

/// `RELOADING=1` with the `CLOCK_MONOTONIC` time systemd wants beside it.
pub fn reloading_message() -> String {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000
        + u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when the watchdog is on and
/// meant for this process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|n| *n > 0)?;
    if let Some(pid) = pid.filter(|p| !p.is_empty())
        && pid.trim().parse::<u32>().ok()? != me
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

/// The TCP sockets passed by systemd socket activation, with their `LISTEN_FDNAMES`
/// names; made close-on-exec so that only a hand-over passes them on.
pub fn activated_sockets() -> Vec<(String, std::net::TcpListener)> {
    let mut fds = listenfd::ListenFd::from_env();
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for i in 0..fds.len() {
        let name = names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("fd{}", i + 3));
        match fds.take_tcp_listener(i) {
            Ok(Some(l)) => {
                if let Err(e) = rustix::io::fcntl_setfd(&l, rustix::io::FdFlags::CLOEXEC) {
                    tracing::warn!(%name, error = %e, "cannot set close-on-exec");
                }
                out.push((name, l));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%name, error = %e, "activated socket is not a TCP listener: ignored")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_and_only_for_us() {
        let half = Some(Duration::from_secs(5));
        assert_eq!(watchdog_interval_from(Some("10000000"), None, 7), half);
        assert_eq!(watchdog_interval_from(Some("10000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval_from(Some("10000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
    }

    #[test]
    fn notifications_reach_a_datagram_socket() {
        let dir = std::env::temp_dir().join(format!("mg-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::at(path.to_str().expect("utf-8")).expect("notifier");
        n.notify(&reloading_message()).expect("send");
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).expect("recv");
        let text = std::str::from_utf8(&buf[..len]).expect("utf-8");
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        let usec: u64 = text
            .rsplit('=')
            .next()
            .expect("value")
            .parse()
            .expect("number");
        assert!(usec > 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn abstract_and_bad_names() {
        assert!(Notifier::at("@mailgate-test").is_ok());
        assert!(Notifier::at("vsock:2:1").is_err());
    }
}
