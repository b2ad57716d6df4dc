//! Watches the routing file's directory and calls back after changes settle. Watching the
//! directory (not the file) catches in-place writes, editors' rename-over, and Kubernetes
//! ConfigMap updates, which swap a `..data` symlink. The callback only signals; the caller
//! reloads (on a thread of its own), and a reload of an unchanged file is a cheap no-op.
//!
//! The callback gets the instant the watcher saw the latest of the changes it reports (the
//! write itself happened before): a reload that started reading after that instant has
//! read the new bytes already, so the caller can skip the one this change would ask for
//! (an edit followed by `SIGHUP` is then reloaded once, not twice).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify_debouncer_full::notify::event::{AccessKind, AccessMode, EventKind};
use notify_debouncer_full::notify::{self, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

/// Default quiet time before a change is reported.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The file has no usable parent directory.
    #[error("cannot watch {0}: no parent directory")]
    NoDirectory(PathBuf),
    /// The OS watcher failed.
    #[error("cannot watch {path}: {source}")]
    Notify {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: notify::Error,
    },
}

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    dir: PathBuf,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("dir", &self.dir).finish()
    }
}

/// Whether an event can mean new content. inotify also reports opens and reads (notify
/// watches IN_OPEN): the reload's own read of the file must not ask for another reload,
/// nor must an operator's `cat`.
fn changes(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Watch `path` (through its directory) and call `on_change` after changes settle, with the
/// instant the latest of them was seen.
pub fn watch(
    path: &Path,
    on_change: impl Fn(Instant) + Send + 'static,
) -> Result<Watcher, WatchError> {
    watch_with(path, DEBOUNCE, on_change)
}

/// [`watch`] with an explicit debounce time.
pub fn watch_with(
    path: &Path,
    debounce: Duration,
    on_change: impl Fn(Instant) + Send + 'static,
) -> Result<Watcher, WatchError> {
    let dir = match path.parent() {
        Some(d) if d.as_os_str().is_empty() => PathBuf::from("."),
        Some(d) => d.to_path_buf(),
        None => return Err(WatchError::NoDirectory(path.to_path_buf())),
    };
    let name = path.file_name().map(|n| n.to_os_string());
    let handler = move |res: DebounceEventResult| {
        let seen = match &res {
            // Errors (e.g. queue overflow) may hide a change: reload to be safe, as of now.
            Err(_) => Some(Instant::now()),
            Ok(events) => events
                .iter()
                .filter(|ev| {
                    ev.need_rescan()
                        || changes(&ev.kind)
                            && ev.paths.iter().any(|p| match p.file_name() {
                                Some(f) => {
                                    Some(f) == name.as_deref()
                                        || f.to_string_lossy().starts_with("..")
                                }
                                None => false,
                            })
                })
                .map(|ev| ev.time)
                .max(),
        };
        if let Some(seen) = seen {
            on_change(seen);
        }
    };
    let notify_err = |source| WatchError::Notify {
        path: dir.clone(),
        source,
    };
    let mut debouncer = new_debouncer(debounce, None, handler).map_err(notify_err)?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(notify_err)?;
    Ok(Watcher {
        _debouncer: debouncer,
        dir,
    })
}
