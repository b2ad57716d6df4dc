//! `admin.state_file`: the admin API's instance-local drains, kept across restarts.
//!
//! The routing file's `drain: true` is the same on every instance; a drain through the
//! admin API (`POST /backends/{name}/drain`) is this instance's override. It is written
//! here after every change — a temporary file in the same directory, flushed, then
//! renamed over the old one, so a crash leaves the old or the new file, never half of
//! one — and restored at start. A missing file is a first start; a broken one (unreadable,
//! not JSON, a format from the future) is reported in the log and on `/status` and
//! ignored: the process starts without local drains and the next change rewrites it.
//!
//! ```json
//! {"format": 1, "drained": [{"backend": "mail1", "reason": "ticket 42", "since_unix": 1764590400}]}
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mailgate_health::{DrainNote, HealthView};
use serde_json::{Value, json};

/// The format written; a file with a higher one is refused (not guessed at).
const FORMAT: u32 = 1;
/// Largest state file read (a few hundred bytes per drained backend).
const MAX_STATE_FILE: u64 = 4 << 20;

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The content is not a state file mailgate understands.
    #[error("{path}: not a mailgate state file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The state file's text for these local drains.
pub fn encode(drains: &[(String, DrainNote)]) -> String {
    let drained: Vec<Value> = drains
        .iter()
        .map(|(backend, note)| {
            let mut e = json!({ "backend": backend });
            if let Some(r) = &note.reason {
                e["reason"] = json!(r);
            }
            if let Some(t) = note
                .since
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            {
                e["since_unix"] = json!(t.as_secs());
            }
            e
        })
        .collect();
    let doc = json!({ "format": FORMAT, "drained": drained });
    // Plain strings and numbers: serialising cannot fail.
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// The local drains a state file's text holds (`path` only names it in errors).
pub fn decode(text: &str, path: &Path) -> Result<Vec<(String, DrainNote)>, StateFileError> {
    let bad = |reason: String| StateFileError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let doc: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    match doc.get("format").and_then(Value::as_u64) {
        Some(f) if f == u64::from(FORMAT) => {}
        Some(f) => return Err(bad(format!("format {f} (this mailgate reads {FORMAT})"))),
        None => return Err(bad("no \"format\" number".into())),
    }
    let entries = match doc.get("drained") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("\"drained\" is not a list".into())),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let Some(backend) = e.get("backend").and_then(Value::as_str) else {
            return Err(bad(format!("drained[{i}] has no backend name")));
        };
        let reason = match e.get("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(r)) => Some(r.clone()),
            Some(_) => return Err(bad(format!("drained[{i}].reason is not a string"))),
        };
        let since = match e.get("since_unix") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(secs) => Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
                None => return Err(bad(format!("drained[{i}].since_unix is not a number"))),
            },
        };
        out.push((backend.to_string(), DrainNote { reason, since }));
    }
    Ok(out)
}

/// Replace `path` with `bytes` atomically: a temporary file beside it, flushed to disk,
/// renamed over it, then the directory flushed (best effort).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Read a state file: `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<(String, DrainNote)>>, StateFileError> {
    let io = |source| StateFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut text = String::new();
    use std::io::Read as _;
    file.take(MAX_STATE_FILE)
        .read_to_string(&mut text)
        .map_err(io)?;
    decode(&text, path).map(Some)
}

/// The instance's local drains and the file that keeps them. Without `admin.state_file`
/// drains are kept in memory only (lost at restart), as before the file existed.
#[derive(Debug)]
pub struct DrainStore {
    path: Option<PathBuf>,
    health: HealthView,
    /// Serialises writers, so the last write holds the latest drains.
    write: Mutex<()>,
    /// The last problem with the file (start or write), for `/status`.
    problem: Mutex<Option<String>>,
}

impl DrainStore {
    /// Restore the drains `path` keeps into `health` (whose backends are already set).
    /// Never fails: a broken file is logged, kept as the store's problem and ignored.
    pub fn open(path: Option<PathBuf>, health: &HealthView) -> Arc<DrainStore> {
        let store = DrainStore {
            path,
            health: health.clone(),
            write: Mutex::new(()),
            problem: Mutex::new(None),
        };
        if let Some(p) = &store.path {
            match read(p) {
                Ok(None) => tracing::info!(file = %p.display(), "no state file yet"),
                Ok(Some(drains)) => store.restore(p, drains),
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        "state file is broken: ignored, no local drains restored \
                         (the next drain or undrain rewrites it)"
                    );
                    store.set_problem(Some(format!("at start: {e}")));
                }
            }
        }
        Arc::new(store)
    }

    fn restore(&self, path: &Path, drains: Vec<(String, DrainNote)>) {
        for (backend, note) in drains {
            if self.health.restore_local_drain(&backend, note) {
                tracing::warn!(backend, file = %path.display(), "local drain restored");
            } else {
                tracing::warn!(
                    backend,
                    file = %path.display(),
                    "state file drains a backend the routing file does not have: dropped"
                );
            }
        }
    }

    /// The state file, if configured.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The last problem with the file, if the last attempt failed.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_problem(&self, p: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = p;
    }

    /// Write the current local drains (blocking: call from a blocking thread). `Ok(false)`
    /// when no state file is configured.
    pub fn save(&self) -> Result<bool, StateFileError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let _one = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let text = encode(&self.health.local_drains());
        match write_atomic(path, text.as_bytes()) {
            Ok(()) => {
                self.set_problem(None);
                Ok(true)
            }
            Err(source) => {
                let e = StateFileError::Io {
                    path: path.clone(),
                    source,
                };
                tracing::error!(error = %e, "state file not written: the drain holds until restart only");
                self.set_problem(Some(format!("writing: {e}")));
                Err(e)
            }
        }
    }
}

#[cfg(test)]
#[path = "state_file_tests.rs"]
mod tests;
