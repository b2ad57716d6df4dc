//! Reading a routing file: the big `domains:` block through the fast path
//! (`fast_domains.rs`) when it is written one plain pair per line, everything else (and the
//! whole file when the fast path declines) through serde-saphyr; then `validate.rs`.

use std::path::Path;

use crate::diag::{self, ConfigErrors, Diagnostic};
use crate::fast_domains;
use crate::schema::{RoutingFile, with_interner};
use crate::table::{Loaded, RoutingTable, fnv1a};
use crate::validate::build;

impl RoutingTable {
    /// Read, parse and validate a routing file. Every problem is reported at once (schema
    /// errors — unknown keys, wrong types, YAML syntax — stop at the first).
    pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
        let text = diag::read_file(path)?;
        Self::parse(&text, path)
    }

    /// Parse and validate routing YAML as if read from `path` (relative `password_file`s and
    /// `tls_ca_file`s resolve against its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Loaded, ConfigErrors> {
        match parse_fast(text, path) {
            Some(result) => result,
            None => parse_full(text, path),
        }
    }
}

/// The parser settings of routing files.
fn options() -> serde_saphyr::Options {
    // YAML merge keys (`<<: *anchor`) are refused: expanding them makes the parser
    // remember every key of every mapping (a million domains: +120 MB peak, +20 % CPU),
    // and no routing file needs them.
    let mut options = diag::yaml_options();
    options.merge_keys = serde_saphyr::MergeKeyPolicy::Error;
    options
}

fn empty(text: &str, path: &Path) -> Option<ConfigErrors> {
    text.trim().is_empty().then(|| {
        ConfigErrors::single(Diagnostic::new(
            path,
            None,
            "",
            "file is empty (a truncated write?)",
        ))
    })
}

/// The whole file through serde-saphyr.
pub(crate) fn parse_full(text: &str, path: &Path) -> Result<Loaded, ConfigErrors> {
    if let Some(e) = empty(text, path) {
        return Err(e);
    }
    let file: RoutingFile = with_interner(|| serde_saphyr::from_str_with_options(text, options()))
        .map_err(|e| ConfigErrors::single(diag::from_yaml_error(path, text, &e)))?;
    build(file, None, path, fnv1a(text.as_bytes()))
}

/// The `domains:` block read directly and the rest through serde-saphyr, or `None` where the
/// full parser must decide (a block outside the fast grammar, any error in the rest, a budget
/// the whole file might breach): then the caller's full parse gives the exact errors.
pub(crate) fn parse_fast(text: &str, path: &Path) -> Option<Result<Loaded, ConfigErrors>> {
    if empty(text, path).is_some() || text.len() as u64 > diag::MAX_FILE_BYTES {
        return None;
    }
    let (file, block) = with_interner(|| {
        let split = fast_domains::split(text)?;
        // What the block would have cost the full parse comes off the rest's budget,
        // generously (each line as if it held two scalars and a comment, each entry as four
        // nodes): a rest that breaches the smaller budget goes to the full parser, which then
        // decides with the real one.
        let mut options = options();
        if let Some(b) = options.budget.as_mut() {
            b.max_events = b.max_events.checked_sub(4 * split.block_lines)?;
            b.max_nodes = b.max_nodes.checked_sub(4 * split.block.entries)?;
            b.max_total_scalar_bytes = b.max_total_scalar_bytes.checked_sub(split.block_bytes)?;
        }
        let file: RoutingFile = serde_saphyr::from_str_with_options(&split.rest, options).ok()?;
        // The rest's `domains` must be the empty mapping put at the header's line: then the
        // header was the top-level key (not text inside a multi-line scalar or a flow
        // collection) and no other `domains` key exists.
        if file.domains.line != split.header_line || !file.domains.value.0.is_empty() {
            return None;
        }
        Some((file, split.block))
    })?;
    // The block's entries go from the text straight into the table.
    Some(build(file, Some(block), path, fnv1a(text.as_bytes())))
}
