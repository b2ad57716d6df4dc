//! The live routing table: an `ArcSwap` holding the current snapshot. A reload parses and
//! validates a new table completely before swapping; a bad file changes nothing. Reloads are
//! serialised; call [`Routing::reload`] from a blocking thread (it parses the whole file).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::diag::{ConfigErrors, Diagnostic};
use crate::diff::RoutingDiff;
use crate::table::{Loaded, RoutingTable};

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// Changes from the previous table (empty when the file did not change).
    pub diff: Arc<RoutingDiff>,
    /// Version of the table now in force.
    pub version: u64,
    /// Warnings of the new file.
    pub warnings: Vec<Diagnostic>,
    /// The file's content was identical to the table in force; nothing was swapped.
    pub unchanged: bool,
    /// The table before the swap (the health side compares sessions against both).
    pub previous: Arc<RoutingTable>,
}

/// The current routing table and how to reload it.
#[derive(Debug)]
pub struct Routing {
    current: ArcSwap<RoutingTable>,
    path: PathBuf,
    last: ArcSwap<Option<ReloadReport>>,
    lock: Mutex<()>,
}

impl From<Loaded> for Routing {
    fn from(l: Loaded) -> Self {
        Routing::new(l.table)
    }
}

impl Routing {
    /// Start with `table`; reloads read `table.source()`.
    pub fn new(table: impl Into<RoutingTable>) -> Self {
        let table: RoutingTable = table.into();
        Routing {
            path: table.source.clone(),
            current: ArcSwap::from_pointee(table),
            last: ArcSwap::from_pointee(None),
            lock: Mutex::new(()),
        }
    }

    /// Load `path` and start with it.
    pub fn load(path: &Path) -> Result<(Self, Vec<Diagnostic>), ConfigErrors> {
        let Loaded { table, warnings } = RoutingTable::load(path)?;
        Ok((Routing::new(table), warnings))
    }

    /// The snapshot in force. A session takes it once and keeps it.
    pub fn current(&self) -> Arc<RoutingTable> {
        self.current.load_full()
    }

    /// The routing file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The report of the last successful reload that swapped a table.
    pub fn last_reload(&self) -> Option<ReloadReport> {
        (**self.last.load()).clone()
    }

    /// Re-read the routing file; swap only if it parses and validates. On error the table in
    /// force stays and the errors say why.
    pub fn reload(&self) -> Result<ReloadReport, ConfigErrors> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.current();
        let Loaded { table, warnings } = RoutingTable::load(&self.path)?;
        if table.version == previous.version {
            return Ok(ReloadReport {
                diff: Arc::new(RoutingDiff::default()),
                version: table.version,
                warnings,
                unchanged: true,
                previous,
            });
        }
        let diff = Arc::new(previous.diff(&table));
        let version = table.version;
        self.current.store(Arc::new(table));
        let report = ReloadReport {
            diff,
            version,
            warnings,
            unchanged: false,
            previous,
        };
        self.last.store(Arc::new(Some(report.clone())));
        Ok(report)
    }
}

impl From<Loaded> for RoutingTable {
    fn from(l: Loaded) -> Self {
        l.table
    }
}
