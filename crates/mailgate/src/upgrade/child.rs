//! The new process's side of a binary upgrade: connect to the process it replaces (named
//! by `MAILGATE_UPGRADE_SOCKET`), receive the listening sockets into the pool the listener
//! code binds from, and later say `ready` and wait to be told it is in charge.

use std::os::linux::net::SocketAddrExt as _;
use std::time::Duration;

use tokio::net::UnixStream;

use super::{ENV_SOCKET, UpgradeError, fdpass, inherit};

/// How long the old process has to confirm the hand-over.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection to the process being replaced.
#[derive(Debug)]
pub struct ParentLink {
    stream: UnixStream,
}

/// When started by an upgrade: connect to the old process and take its sockets.
pub async fn connect() -> Result<Option<ParentLink>, UpgradeError> {
    let Some(name) = std::env::var_os(ENV_SOCKET) else {
        return Ok(None);
    };
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_encoded_bytes())
        .map_err(UpgradeError::Socket)?;
    let stream = std::os::unix::net::UnixStream::connect_addr(&addr)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(UnixStream::from_std)
        .map_err(UpgradeError::Socket)?;
    let (line, fds) = tokio::time::timeout(HANDOVER_TIMEOUT, fdpass::recv(&stream))
        .await
        .map_err(|_| UpgradeError::Timeout(HANDOVER_TIMEOUT))?
        .map_err(UpgradeError::Socket)?;
    let names: Vec<&str> = match line.strip_prefix("fds") {
        Some(rest) => rest.split_whitespace().collect(),
        None => return Err(UpgradeError::Protocol(line.chars().take(80).collect())),
    };
    let count = fds.len();
    for (i, fd) in fds.into_iter().enumerate() {
        let name = names.get(i).copied().unwrap_or("listener").to_string();
        inherit::add(name, std::net::TcpListener::from(fd));
    }
    tracing::info!(sockets = count, "upgrade: listening sockets received");
    Ok(Some(ParentLink { stream }))
}

impl ParentLink {
    /// Tell the old process this one serves; resolves when it confirmed (or gave no
    /// answer in time: this process serves either way).
    pub async fn ready(self) {
        let line = format!("ready {}\n", std::process::id());
        if let Err(e) = fdpass::send(&self.stream, line.as_bytes(), &[]).await {
            tracing::warn!(error = %e, "upgrade: cannot tell the old process");
            return;
        }
        match tokio::time::timeout(HANDOVER_TIMEOUT, fdpass::recv(&self.stream)).await {
            Ok(Ok((l, _))) if l == "handover" => {
                tracing::info!("upgrade: the old process handed over; this one is in charge")
            }
            Ok(Ok((l, _))) => {
                tracing::warn!(reply = %l.chars().take(80).collect::<String>(), "upgrade: unexpected reply")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "upgrade: the old process did not confirm"),
            Err(_) => tracing::warn!("upgrade: no confirmation from the old process in time"),
        }
    }
}
