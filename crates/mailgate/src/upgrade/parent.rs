//! The old process's side of a binary upgrade: start the binary now on disk at this
//! process's path, with the same arguments, hand it the listening sockets over a unix
//! socket only it can use, and wait until it says it is ready — or exits, or takes too
//! long, in which case this process stays in charge.

use std::ffi::OsString;
use std::os::linux::net::SocketAddrExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::{ENV_SOCKET, UpgradeError, fdpass, inherit};

/// How long the new process has to load its config and report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(45);

/// A new process that is ready to take over.
#[derive(Debug)]
pub struct Successor {
    child: Child,
    link: UnixStream,
    /// Its process id.
    pub pid: u32,
    /// The names of the listeners it was handed.
    pub handed: Vec<&'static str>,
}

impl Successor {
    /// Tell it that it is in charge now (it may then speak to systemd as the main
    /// process). The child is not waited for: it outlives this process.
    pub async fn hand_over(self) {
        if let Err(e) = fdpass::send(&self.link, b"handover\n", &[]).await {
            tracing::warn!(pid = self.pid, error = %e, "upgrade: cannot confirm the hand-over");
        }
        drop(self.child);
    }
}

/// The binary at this process's path as the file is now (after a package upgrade
/// replaced it, `/proc/self/exe` names the old, deleted file: the path is what counts).
pub fn binary_path() -> Result<PathBuf, UpgradeError> {
    let link = std::fs::read_link("/proc/self/exe").map_err(UpgradeError::Exe)?;
    let shown = link.to_string_lossy();
    let path = match shown.strip_suffix(" (deleted)") {
        Some(p) => PathBuf::from(p),
        None => link,
    };
    if !path.is_file() {
        return Err(UpgradeError::Exe(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a file", path.display()),
        )));
    }
    Ok(path)
}

/// Start the successor and hand it the listeners; resolves when it is ready. When
/// `cancel` fires first (this process shuts down), the successor is stopped.
pub async fn start_successor(cancel: CancellationToken) -> Result<Successor, UpgradeError> {
    let exe = binary_path()?;
    let name = format!(
        "mailgate-upgrade-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    );
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .map_err(UpgradeError::Socket)?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(UnixListener::from_std)
        .map_err(UpgradeError::Socket)?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut child = Command::new(&exe)
        .args(&args)
        .env(ENV_SOCKET, &name)
        // Socket activation and the watchdog were meant for this process; the child gets
        // the sockets from us and becomes the watchdog's process once it is in charge.
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| UpgradeError::Spawn(exe.display().to_string(), e))?;
    let pid = child.id().unwrap_or(0);
    tracing::info!(pid, binary = %exe.display(), "upgrade: new process started");
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let result = tokio::select! {
        r = handshake(&listener, pid) => r,
        status = child.wait() => Err(match status {
            Ok(s) => UpgradeError::Exited(s.to_string()),
            Err(e) => UpgradeError::Exited(e.to_string()),
        }),
        _ = tokio::time::sleep_until(deadline) => Err(UpgradeError::Timeout(READY_TIMEOUT)),
        _ = cancel.cancelled() => Err(UpgradeError::Cancelled),
    };
    match result {
        Ok((link, handed)) => Ok(Successor {
            child,
            link,
            pid,
            handed,
        }),
        Err(e) => {
            // Whatever it got so far, this process keeps serving: make sure it is gone.
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            }
            Err(e)
        }
    }
}

/// Accept the child's connection (checked by its process id), send the sockets, wait
/// for `ready`.
async fn handshake(
    listener: &UnixListener,
    pid: u32,
) -> Result<(UnixStream, Vec<&'static str>), UpgradeError> {
    let link = loop {
        let (stream, _) = listener.accept().await.map_err(UpgradeError::Socket)?;
        match rustix::net::sockopt::socket_peercred(&stream) {
            Ok(cred) if u32::try_from(cred.pid.as_raw_nonzero().get()).ok() == Some(pid) => {
                break stream;
            }
            Ok(cred) => tracing::warn!(
                peer_pid = cred.pid.as_raw_nonzero().get(),
                "upgrade: a process other than the new one connected: refused"
            ),
            Err(e) => tracing::warn!(error = %e, "upgrade: cannot check the peer: refused"),
        }
    };
    let offered = inherit::offered();
    let handed: Vec<&'static str> = offered.iter().map(|(n, _)| *n).collect();
    let line = format!("fds {}\n", handed.join(" "));
    fdpass::send(&link, line.as_bytes(), &inherit::fds(&offered))
        .await
        .map_err(UpgradeError::Socket)?;
    drop(offered);
    let (reply, _) = fdpass::recv(&link).await.map_err(UpgradeError::Socket)?;
    match reply.strip_prefix("ready") {
        Some(_) => Ok((link, handed)),
        None => Err(UpgradeError::Protocol(reply.chars().take(80).collect())),
    }
}
