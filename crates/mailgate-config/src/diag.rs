//! Diagnostics: every problem found in a config or routing file, with file, line and key path,
//! so that an operator can fix all of them in one edit. Also the YAML parser settings shared by
//! both files (node budget raised for 1M-domain routing files, YAML bombs still refused).

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem (or warning) in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `domains.example.com` or `backends.mail1.imap_port`; empty for
    /// problems of the whole file.
    pub key: String,
    /// What is wrong, for people.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic for `file`.
    pub fn new(
        file: &Path,
        line: Option<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found while loading a file; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl ConfigErrors {
    /// One error.
    pub fn single(d: Diagnostic) -> Self {
        ConfigErrors(vec![d])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Largest file we read at all (the 1M-domain routing file is ~40 MB).
pub(crate) const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// Parser settings: a node/event budget large enough for millions of routing entries, but a
/// small alias budget and nesting depth so that billion-laughs and deep-nesting files are
/// refused with a clear error instead of eating memory or stack.
pub(crate) fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(MAX_FILE_BYTES as usize);
    budget.max_events = 50_000_000;
    budget.max_nodes = 20_000_000;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES as usize;
    budget.max_depth = 32;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_recorded_anchor_events = 10_000;
    budget.max_documents = 1;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    options.with_snippet = false;
    options.strict_booleans = true;
    options
}

/// Read a file for parsing: existence, size cap, UTF-8 and "empty" are diagnosed here.
pub(crate) fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    let fail = |m: String| ConfigErrors::single(Diagnostic::new(path, None, "", m));
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail(format!(
            "file is {} bytes, more than the limit of {MAX_FILE_BYTES}",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        ConfigErrors::single(Diagnostic::new(
            path,
            Some(line),
            "",
            "file is not valid UTF-8",
        ))
    })?;
    let has_content = text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "---" && t != "..."
    });
    if !has_content {
        return Err(fail("file is empty (a truncated write?)".into()));
    }
    Ok(text)
}

/// Turn a parser/schema error into a diagnostic, with the key path guessed from the
/// indentation of the lines above the error (exact for block-style YAML).
pub(crate) fn from_yaml_error(path: &Path, text: &str, err: &serde_saphyr::Error) -> Diagnostic {
    let line = err.location().map(|l| l.line() as usize).filter(|&l| l > 0);
    let key = line.map(|l| key_path_at(text, l)).unwrap_or_default();
    let mut message = err.without_snippet().to_string();
    // The parser's message may repeat the position; keep the first line only.
    if let Some(first) = message.lines().next() {
        message = first.to_string();
    }
    let mut message = strip_position(&message);
    if message.starts_with("budget breached") {
        message = format!(
            "refused: YAML too large or too complex (anchors, aliases, nesting depth or node count over the limit; {message})"
        );
    }
    Diagnostic::new(path, line, key, message)
}

fn strip_position(message: &str) -> String {
    // serde-saphyr appends " at line N column M"; we print the line ourselves.
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// The dotted key path of the mapping key on 1-based `line`, from indentation.
pub(crate) fn key_path_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().take(line).collect();
    let mut path: Vec<String> = Vec::new();
    let mut limit = usize::MAX;
    for l in lines.iter().rev() {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = l.len() - trimmed.len();
        if indent >= limit {
            continue;
        }
        if let Some(key) = key_of(trimmed) {
            path.push(key);
            limit = indent;
            if indent == 0 {
                break;
            }
        }
    }
    path.reverse();
    path.join(".")
}

/// The 1-based line of the mapping key with dotted `path`, if written in block style.
pub(crate) fn line_of_key(text: &str, path: &str) -> Option<usize> {
    let last = path.rsplit('.').next()?;
    text.lines().enumerate().find_map(|(i, l)| {
        let k = key_of(l.trim_start())?;
        (k == last && key_path_at(text, i + 1) == path).then_some(i + 1)
    })
}

fn key_of(line: &str) -> Option<String> {
    let line = line.strip_prefix("- ").unwrap_or(line);
    let (raw, rest) = if let Some(q) = line.strip_prefix('"') {
        let end = q.find('"')?;
        (&q[..end], &q[end + 1..])
    } else if let Some(q) = line.strip_prefix('\'') {
        let end = q.find('\'')?;
        (&q[..end], &q[end + 1..])
    } else {
        let end = line.find(':')?;
        (&line[..end], &line[end..])
    };
    if !rest.starts_with(':') {
        return None;
    }
    Some(raw.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_path_from_indentation() {
        let text = "backends:\n  mail1:\n    host: x\n    # c\n    imap_port: 99999\ndomains:\n  \"a.b\": mail1\n";
        assert_eq!(key_path_at(text, 5), "backends.mail1.imap_port");
        assert_eq!(key_path_at(text, 7), "domains.a.b");
        assert_eq!(key_path_at(text, 1), "backends");
    }

    #[test]
    fn display_format() {
        let d = Diagnostic::new(Path::new("r.yaml"), Some(3), "domains.x", "unknown backend");
        assert_eq!(d.to_string(), "r.yaml:3: domains.x: unknown backend");
        let e = ConfigErrors(vec![d.clone(), d]);
        assert_eq!(e.to_string().lines().count(), 2);
    }
}
