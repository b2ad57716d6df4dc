//! Hitless restart and binary upgrade (issue #13), and systemd.
//!
//! `SIGUSR2` or `POST /upgrade` (`mailgate ctl upgrade`) start the binary at this
//! process's path — the file on disk now, i.e. the upgraded one — with the same
//! arguments. The old process hands the new one every listening socket, the admin
//! listener included, over a unix socket in the abstract namespace that only the new
//! process (checked by its process id) may use, with `SCM_RIGHTS` ([`fdpass`]). The sockets
//! never close, so no connection is refused: both processes accept from the same queue
//! until the new one is ready.
//!
//! The new process validates its configuration first; if that fails it exits non-zero
//! and the old one, which still has every socket, logs why and stays in charge. Once the
//! new process listens and has its routing loaded, it says `ready`; the old one then stops
//! accepting (pre-auth sessions may still log in), stops its admin server, tells systemd
//! the new main process (`MAINPID=`), and keeps its spliced sessions until they end or
//! `upgrade_grace` has passed; then it closes the rest spread over
//! `shutdown_close_window` and exits. A SIGTERM during that drain shortens it to the
//! ordinary shutdown (`shutdown_grace`).
//!
//! Parts: [`inherit`] (the pool of sockets received, the registry of sockets in use),
//! [`parent`] and [`child`] (the two sides of the hand-over), [`systemd`] (notifications,
//! watchdog, socket activation), [`journal`] (plain lines for journald), [`supervisor`] (the task that runs all of it in the
//! serving process) and [`endpoint`] (`POST /upgrade`). See docs/operations.md.

pub mod child;
pub mod endpoint;
pub mod fdpass;
pub mod inherit;
pub mod journal;
pub mod parent;
pub mod supervisor;
pub mod systemd;

pub use supervisor::{AdminSlot, Supervisor};

use std::time::Duration;

/// Names the abstract unix socket a new process fetches its sockets from.
pub const ENV_SOCKET: &str = "MAILGATE_UPGRADE_SOCKET";

/// Why an upgrade did not happen (the old process stays in charge).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// This process's binary path cannot be found.
    #[error("cannot find the binary to start: {0}")]
    Exe(std::io::Error),
    /// The new process could not be started.
    #[error("cannot start {0}: {1}")]
    Spawn(String, std::io::Error),
    /// The new process ended before it was ready (a bad config, typically: its own log
    /// says why).
    #[error("the new process exited before it was ready ({0}); see its log lines above")]
    Exited(String),
    /// The new process did not report ready in time (it was stopped).
    #[error("the new process was not ready within {0:?}; it was stopped")]
    Timeout(Duration),
    /// The hand-over socket failed.
    #[error("hand-over socket: {0}")]
    Socket(std::io::Error),
    /// The other side said something unexpected.
    #[error("hand-over: unexpected message {0:?}")]
    Protocol(String),
    /// This process began shutting down first (the new process was stopped).
    #[error("shutdown began before the new process was ready; it was stopped")]
    Cancelled,
    /// An upgrade is already running.
    #[error("an upgrade is already in progress")]
    Busy,
}

/// Before binding: take the sockets passed by systemd socket activation, and when this
/// process was started by an upgrade, those of the process it replaces.
pub async fn inherit_sockets() -> Result<Option<child::ParentLink>, UpgradeError> {
    for (name, l) in systemd::activated_sockets() {
        inherit::add(name, l);
    }
    child::connect().await
}
