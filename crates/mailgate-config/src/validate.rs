//! Turns a parsed [`RoutingFile`] into a [`RoutingTable`], collecting every problem with its
//! line and key path instead of stopping at the first: unknown backends, duplicates (also
//! after case folding and IDNA), bad ports, bad wildcards, missing probe password files.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::diag::{ConfigErrors, Diagnostic};
use crate::fast_domains::Block;
use crate::keymap::{Entry, KeyMap, Refused};
use crate::normalize::{normalize_domain, normalize_wildcard, parse_login};
use crate::schema::{BackendSpec, ForwardMode, Lined, ProbeSpec, RoutingFile, TlsMode};
use crate::table::{
    Backend, BackendTls, FileDrain, ForwardClient, Loaded, MAX_DRAIN_REASON, Probe, RoutingTable,
};
use mailgate_proto::Secret;

struct Ctx<'a> {
    path: &'a Path,
    dir: PathBuf,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn err(&mut self, line: usize, key: String, message: impl Into<String>) {
        let line = (line > 0).then_some(line);
        self.errors
            .push(Diagnostic::new(self.path, line, key, message));
    }
    fn resolve(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }
}

/// Build and validate.
/// `fast`: the `domains:` block as the fast path read it (then `file.domains` is empty).
pub(crate) fn build(
    mut file: RoutingFile,
    fast: Option<Block<'_>>,
    path: &Path,
    version: u64,
) -> Result<Loaded, ConfigErrors> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cx = Ctx {
        path,
        dir,
        errors: Vec::new(),
        warnings: Vec::new(),
    };

    // Backends.
    let mut backends: Vec<Backend> = Vec::with_capacity(file.backends.0.len());
    let mut by_name: HashMap<String, u32> = HashMap::new();
    let mut lines: Vec<usize> = Vec::new();
    let mut fallbacks: Vec<(u32, Lined<String>)> = Vec::new();
    if file.backends.0.is_empty() {
        cx.err(0, "backends".into(), "at least one backend is required");
    }
    for (name, spec) in file.backends.0 {
        let key = format!("backends.{}", name.value);
        if name.value.is_empty()
            || !name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            cx.err(
                name.line,
                key.clone(),
                "backend names may only use letters, digits, '-', '_' and '.'",
            );
        }
        if let Some(&first) = by_name.get(&name.value) {
            let first_line = lines.get(first as usize).copied().unwrap_or(0);
            cx.err(
                name.line,
                key,
                format!("backend defined twice (first on line {first_line})"),
            );
            continue;
        }
        let idx = backends.len() as u32;
        if let Some(fb) = &spec.fallback {
            fallbacks.push((idx, fb.clone()));
        }
        let backend = backend(&mut cx, &key, name.line, name.value.clone(), spec);
        by_name.insert(name.value, idx);
        lines.push(name.line);
        backends.push(backend);
    }
    let mut referenced = vec![false; backends.len()];
    // `key` builds the error's key path only when there is an error (1M domains: no
    // per-entry formatting on the good path).
    let mut resolve_ref =
        |cx: &mut Ctx<'_>, name: &str, line: usize, key: &dyn Fn() -> String| match by_name
            .get(name)
        {
            Some(&i) => {
                if let Some(r) = referenced.get_mut(i as usize) {
                    *r = true;
                }
                Some(i)
            }
            None => {
                cx.err(line, key(), format!("unknown backend \"{name}\""));
                None
            }
        };
    for (idx, fb) in &fallbacks {
        let key = format!("backends.{}.fallback", backends[*idx as usize].name);
        if backends[*idx as usize].name == fb.value {
            cx.err(fb.line, key, "a backend cannot be its own fallback");
        } else {
            resolve_ref(&mut cx, &fb.value, fb.line, &|| key.clone());
        }
    }

    // Default domain.
    let default_domain = file.default_domain.as_ref().and_then(|d| {
        let n = normalize_domain(&d.value).map(|c| c.into_owned());
        if n.is_none() {
            cx.err(
                d.line,
                "default_domain".into(),
                format!("\"{}\" is not a valid domain name", d.value),
            );
        }
        n
    });

    let master_user_separator = match &file.master_user_separator {
        None => Some(crate::normalize::DEFAULT_MASTER_SEPARATOR),
        Some(sep) => crate::normalize::master_separator(&sep.value).unwrap_or_else(|msg| {
            cx.err(sep.line, "master_user_separator".into(), msg);
            None
        }),
    };

    // Domains and wildcards: from the fast path's text when it took the block (a million
    // entries never held as owned strings), else from the parsed entries.
    let parsed = std::mem::take(&mut file.domains.value.0);
    let (count, key_bytes) = match &fast {
        Some(block) => (block.entries, block.key_bytes),
        None => (
            parsed.len(),
            parsed.iter().map(|(d, _)| d.value.len() + 1).sum(),
        ),
    };
    let mut domains = KeyMap::with_capacity(count, key_bytes);
    let mut wildcards: HashMap<Box<str>, (Entry, Arc<str>)> = HashMap::new();
    let mut add = |cx: &mut Ctx<'_>, written: &str, target: &str, line: usize| {
        let key = || format!("domains.{written}");
        let b = resolve_ref(cx, target, line, &key);
        let entry = Entry {
            backend: b.unwrap_or(u32::MAX),
            line: line as u32,
            has_users: false,
        };
        if written.contains('*') {
            let Some(suffix) = normalize_wildcard(written) else {
                cx.err(
                    line,
                    key(),
                    "bad wildcard: write \"*.example.net\" (one leading \"*.\", then a domain)",
                );
                return;
            };
            let rule: Arc<str> = Arc::from(format!("*.{suffix}"));
            match wildcards.entry(suffix.into_boxed_str()) {
                MapEntry::Occupied(o) => dup(cx, line, key(), o.get().0.line),
                MapEntry::Vacant(v) => {
                    v.insert((entry, rule));
                }
            }
        } else {
            let inserted = match normalize_domain(written) {
                Some(norm) => domains.insert(&norm, entry),
                None => Err(Refused::TooBig),
            };
            match inserted {
                Ok(()) => {}
                Err(Refused::Duplicate(first)) => dup(cx, line, key(), first.line),
                Err(Refused::TooBig) => cx.err(
                    line,
                    key(),
                    format!("\"{written}\" is not a valid domain name"),
                ),
            }
        }
    };
    match fast {
        Some(block) => {
            for (written, target, line) in block.entries() {
                add(&mut cx, written, target, line);
            }
        }
        None => {
            for (dom, target) in parsed {
                add(&mut cx, &dom.value, &target, dom.line);
            }
        }
    }
    domains.shrink_arena();

    // Users.
    let mut users = KeyMap::with_capacity(file.users.0.len(), 0);
    let mut user_only_domains = std::collections::HashSet::new();
    for (user, target) in file.users.0 {
        let key = format!("users.{}", user.value);
        let b = resolve_ref(&mut cx, &target, user.line, &|| key.clone());
        let entry = Entry {
            backend: b.unwrap_or(u32::MAX),
            line: user.line as u32,
            has_users: false,
        };
        let login = parse_login(&user.value, default_domain.as_deref());
        let Some(login) = login.filter(|l| l.domain.is_some()) else {
            let msg = if user.value.contains('@') || default_domain.is_some() {
                "not a valid address (user@domain)"
            } else {
                "needs a domain (user@domain), or set default_domain"
            };
            cx.err(user.line, key, msg);
            continue;
        };
        if let Some(d) = login.domain.as_deref()
            && !domains.set_has_users(d)
        {
            user_only_domains.insert(Box::from(d));
        }
        match users.insert(&login.address(), entry) {
            Ok(()) => {}
            Err(Refused::Duplicate(first)) => dup(&mut cx, user.line, key, first.line),
            Err(Refused::TooBig) => cx.err(user.line, key, "not a valid address (user@domain)"),
        }
    }

    let default = file
        .default
        .as_ref()
        .and_then(|d| resolve_ref(&mut cx, &d.value, d.line, &|| "default".into()));

    for (i, b) in backends.iter().enumerate() {
        if !referenced.get(i).copied().unwrap_or(true) {
            let line = lines.get(i).copied().filter(|&l| l > 0);
            cx.warnings.push(Diagnostic::new(
                path,
                line,
                format!("backends.{}", b.name),
                "no domain, user, default or fallback refers to this backend",
            ));
        }
    }

    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|d| d.line);
        return Err(ConfigErrors(cx.errors));
    }
    Ok(Loaded {
        table: RoutingTable {
            backends: backends.into_iter().map(Arc::new).collect(),
            by_name,
            domains,
            wildcards,
            users,
            user_only_domains,
            default,
            default_domain,
            master_user_separator,
            version,
            loaded_at: SystemTime::now(),
            source: path.to_path_buf(),
        },
        warnings: cx.warnings,
    })
}

fn dup(cx: &mut Ctx<'_>, line: usize, key: String, first: u32) {
    cx.err(
        line,
        key,
        format!("duplicate of line {first} (names are compared case-insensitively, after IDNA)"),
    );
}

fn port(cx: &mut Ctx<'_>, key: &str, field: &str, v: &Option<Lined<i64>>) -> Option<u16> {
    let v = v.as_ref()?;
    match u16::try_from(v.value) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            cx.err(
                v.line,
                format!("{key}.{field}"),
                format!("port {} is not in 1..65535", v.value),
            );
            None
        }
    }
}

fn positive(cx: &mut Ctx<'_>, key: &str, field: &str, v: &Option<Lined<i64>>) -> Option<u32> {
    let v = v.as_ref()?;
    match u32::try_from(v.value) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            cx.err(
                v.line,
                format!("{key}.{field}"),
                format!("{} is not a positive number", v.value),
            );
            None
        }
    }
}

fn backend(cx: &mut Ctx<'_>, key: &str, line: usize, name: String, spec: BackendSpec) -> Backend {
    let host = match &spec.host {
        Some(h)
            if !h.value.is_empty()
                && !h.value.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            h.value.clone()
        }
        Some(h) => {
            cx.err(
                h.line,
                format!("{key}.host"),
                "not a host name or IP address",
            );
            String::new()
        }
        None => {
            cx.err(line, key.to_string(), "missing key \"host\"");
            String::new()
        }
    };
    let imap_port = port(cx, key, "imap_port", &spec.imap_port);
    let pop3_port = port(cx, key, "pop3_port", &spec.pop3_port);
    if spec.imap_port.is_none() && spec.pop3_port.is_none() {
        cx.err(line, key.to_string(), "needs imap_port, pop3_port or both");
    }
    let max_sessions = positive(cx, key, "max_sessions", &spec.max_sessions);
    let max_logins_in_flight =
        positive(cx, key, "max_logins_in_flight", &spec.max_logins_in_flight);
    let tls_ca_file = spec.tls_ca_file.as_ref().map(|f| {
        let p = cx.resolve(&f.value);
        if !p.is_file() {
            cx.err(
                f.line,
                format!("{key}.tls_ca_file"),
                format!("file not found: {}", p.display()),
            );
        }
        p
    });
    let probe = spec.probe.as_ref().and_then(|p| probe(cx, key, &p.value));
    let drain = drain(cx, key, line, &spec);
    Backend {
        name,
        host,
        imap_port,
        pop3_port,
        tls: match spec.tls {
            TlsMode::None => BackendTls::None,
            TlsMode::Starttls => BackendTls::StartTls,
            TlsMode::Implicit => BackendTls::Implicit,
        },
        tls_ca_file,
        tls_verify: spec.tls_verify,
        tls_server_name: spec.tls_server_name,
        max_sessions,
        max_logins_in_flight,
        forward_client: match spec.forward_client {
            ForwardMode::Id => ForwardClient::Id,
            ForwardMode::ProxyV2 => ForwardClient::ProxyV2,
            ForwardMode::None => ForwardClient::None,
        },
        probe,
        unavailable_message: spec.unavailable_message,
        fallback: spec.fallback.map(|f| f.value),
        public_name: spec.public_name,
        drain,
    }
}

/// `drain: true` and `drain_reason:`. A reason without `drain: true` is kept as a warning
/// (an operator who undrains by writing `drain: false` may leave it in place).
fn drain(cx: &mut Ctx<'_>, key: &str, line: usize, spec: &BackendSpec) -> Option<FileDrain> {
    let reason = spec.drain_reason.as_ref().and_then(|r| {
        let text = r.value.trim();
        let rkey = format!("{key}.drain_reason");
        if text.is_empty() {
            cx.err(
                r.line,
                rkey,
                "must not be empty (leave the key out instead)",
            );
            None
        } else if text.chars().any(char::is_control) {
            cx.err(r.line, rkey, "must be one line without control characters");
            None
        } else if text.chars().count() > MAX_DRAIN_REASON {
            cx.err(
                r.line,
                rkey,
                format!("longer than {MAX_DRAIN_REASON} characters"),
            );
            None
        } else {
            Some(text.to_string())
        }
    });
    if spec.drain.as_ref().is_some_and(|d| d.value) {
        return Some(FileDrain { reason });
    }
    if let Some(r) = &spec.drain_reason {
        let at = if r.line > 0 { r.line } else { line };
        cx.warnings.push(Diagnostic::new(
            cx.path,
            Some(at).filter(|&l| l > 0),
            format!("{key}.drain_reason"),
            "has no effect without drain: true",
        ));
    }
    None
}

fn probe(cx: &mut Ctx<'_>, key: &str, spec: &ProbeSpec) -> Option<Probe> {
    let file = cx.resolve(&spec.password_file.value);
    let pkey = format!("{key}.probe.password_file");
    let line = spec.password_file.line;
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            cx.err(line, pkey, format!("cannot read {}: {e}", file.display()));
            return None;
        }
    };
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        cx.err(line, pkey, format!("{} is empty", file.display()));
        return None;
    }
    if spec.user.is_empty() {
        cx.err(line, format!("{key}.probe.user"), "must not be empty");
        return None;
    }
    Some(Probe {
        user: spec.user.clone(),
        password: Secret::new(password),
    })
}
