//! Drains: the routing file's `drain: true` (applied by [`HealthView::set_backends`],
//! the same on every instance that reads the file) and the admin API's instance-local
//! override (these verbs; the server keeps it in its state file). A backend is drained
//! while either applies; lifting the local one never lifts the file's.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use crate::view::{DrainNote, HealthView};

impl HealthView {
    /// Operator drain of this instance: refuse new logins for `backend` (existing
    /// sessions stay). Returns false for an unknown backend.
    pub fn drain(&self, backend: &str) -> bool {
        self.drain_local(backend, None)
    }

    /// [`HealthView::drain`] with a reason. Draining again replaces the reason and keeps
    /// the time it began.
    pub fn drain_local(&self, backend: &str, reason: Option<String>) -> bool {
        self.restore_local_drain(
            backend,
            DrainNote {
                reason,
                since: Some(SystemTime::now()),
            },
        )
    }

    /// Set the local drain as it was saved (state file at start): reason and time kept.
    pub fn restore_local_drain(&self, backend: &str, note: DrainNote) -> bool {
        let Some(slot) = self.slot(backend) else {
            return false;
        };
        let mut st = slot.lock();
        let since = st
            .drains
            .local
            .as_ref()
            .and_then(|d| d.since)
            .or(note.since);
        st.drains.local = Some(DrainNote {
            reason: note.reason,
            since,
        });
        if !slot.drained.swap(true, Ordering::AcqRel) {
            tracing::warn!(backend, drained = true, "operator drain flag changed");
        }
        true
    }

    /// Undo this instance's drain (the routing file's, if any, stays). Returns false for
    /// an unknown backend.
    pub fn undrain(&self, backend: &str) -> bool {
        let Some(slot) = self.slot(backend) else {
            return false;
        };
        slot.lock().drains.local = None;
        if slot.drained.swap(false, Ordering::AcqRel) {
            tracing::warn!(backend, drained = false, "operator drain flag changed");
        }
        true
    }

    /// The backends this instance drained through its admin API, sorted by name (what the
    /// state file keeps).
    pub fn local_drains(&self) -> Vec<(String, DrainNote)> {
        let mut out: Vec<(String, DrainNote)> = self
            .backends()
            .into_iter()
            .filter_map(|name| {
                let slot = self.slot(&name)?;
                let note = slot.lock().drains.local.clone()?;
                Some((name, note))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
#[path = "drain_tests.rs"]
mod tests;
