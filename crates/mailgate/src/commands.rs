//! Offline subcommands around the routing table: `check`, `route`, `routes diff` (issue #3).
//!
//! Exit codes: `check` 0 valid / 1 invalid; `route` 0 routed / 1 no route / 2 config or
//! routing file invalid; `routes diff` 0 report printed / 2 a file is invalid.

use std::path::Path;
use std::process::ExitCode;

use mailgate_config::{Config, ConfigErrors, Diagnostic, LoginForm, RouteRule, RoutingTable};

fn print_errors(e: &ConfigErrors) {
    for d in &e.0 {
        eprintln!("error: {d}");
    }
}

fn print_warnings(w: &[Diagnostic]) {
    for d in w {
        eprintln!("warning: {d}");
    }
}

/// `mailgate check -c FILE`.
pub fn check(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            print_errors(&e);
            eprintln!("{}: {} error(s)", config.display(), e.0.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut errors = cfg.check_files();
    let routing = match RoutingTable::load(&cfg.routing_file) {
        Ok(l) => {
            print_warnings(&l.warnings);
            // The loop guard, as far as literal addresses show it (backend/own.rs).
            let own = crate::backend::own::configured(&cfg.listen);
            let text = std::fs::read_to_string(&cfg.routing_file).unwrap_or_default();
            errors.extend(
                crate::backend::own::literal_loops(&l.table, &own)
                    .into_iter()
                    .map(|lp| {
                        let line = crate::backend::own::line_of(&text, &lp.backend, lp.key);
                        let key = format!("backends.{}.{}", lp.backend, lp.key);
                        Diagnostic::new(&cfg.routing_file, line, key, lp.message())
                    }),
            );
            Some(l.table)
        }
        Err(e) => {
            errors.extend(e.0);
            None
        }
    };
    match routing {
        Some(t) if errors.is_empty() => {
            let c = t.counts();
            println!(
                "ok: {} and {} (version {}): {} backends, {} domains, {} wildcards, {} user overrides, default {}",
                config.display(),
                cfg.routing_file.display(),
                t.version_hex(),
                t.backends().count(),
                c.domains,
                c.wildcards,
                c.users,
                t.default_backend().map_or("none", |b| b.name.as_str()),
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            let n = errors.len();
            print_errors(&ConfigErrors(errors));
            eprintln!("{n} error(s)");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `mailgate check -c NEW --against OLD`: [`check`] of NEW, then which keys changed from
/// OLD and whether a reload applies them (exit 0) or a restart is needed (exit 3).
pub fn check_against(config: &Path, old: &Path) -> anyhow::Result<ExitCode> {
    let code = check(config)?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    let old_cfg = match Config::load(old) {
        Ok(c) => c,
        Err(e) => {
            print_errors(&e);
            eprintln!("{}: {} error(s)", old.display(), e.0.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    let new_cfg = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let diff = mailgate_config::ConfigDiff::between(&old_cfg, &new_cfg);
    let text = std::fs::read_to_string(config).unwrap_or_default();
    for key in diff.reloadable() {
        println!("reloads: {key}");
    }
    let restart = diff.restart_errors(&text);
    for d in &restart {
        println!("needs restart: {d}");
    }
    if restart.is_empty() {
        println!(
            "a reload applies every change ({} changed key(s))",
            diff.changes.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "a reload would be refused and change nothing: {} key(s) need a restart",
            restart.len()
        );
        Ok(ExitCode::from(3))
    }
}

fn load_table(path: &Path) -> Option<RoutingTable> {
    match RoutingTable::load(path) {
        Ok(l) => {
            print_warnings(&l.warnings);
            Some(l.table)
        }
        Err(e) => {
            print_errors(&e);
            None
        }
    }
}

/// `mailgate route -c FILE [--authzid MAILBOX] USER`: the route of a login as a session
/// takes it — Dovecot's master-user form `user*master` routes on `user`, and with
/// `--authzid` (SASL PLAIN's authorization identity) the login routes on that mailbox.
pub fn route(config: &Path, user: &str, authzid: Option<&str>) -> anyhow::Result<ExitCode> {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            print_errors(&e);
            return Ok(ExitCode::from(2));
        }
    };
    let Some(table) = load_table(&cfg.routing_file) else {
        return Ok(ExitCode::from(2));
    };
    // Show the login as typed, but never control characters.
    let show = |s: &str| -> String { s.chars().flat_map(char::escape_debug).collect() };
    let shown = match authzid {
        Some(z) => format!("{} (authzid; authcid {})", show(z), show(user)),
        None => show(user),
    };
    let routed = table.route_identity(authzid, user);
    let note = match routed.form {
        LoginForm::MasterUser => format!(", master user form: mailbox {}", routed.address),
        LoginForm::Authzid => format!(", mailbox {}", routed.address),
        LoginForm::Own => String::new(),
    };
    match routed.route {
        Some(r) => {
            let domain = routed.domain.unwrap_or_default();
            let why = match &r.rule {
                RouteRule::Domain => format!("domain {domain}"),
                other => other.to_string(),
            };
            println!("{shown} -> {} ({why}{note})", r.backend.name);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            println!("{shown}: no route{note}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `mailgate routes diff OLD NEW`.
pub fn routes_diff(old: &Path, new: &Path) -> anyhow::Result<ExitCode> {
    let (Some(a), Some(b)) = (load_table(old), load_table(new)) else {
        return Ok(ExitCode::from(2));
    };
    let diff = a.diff(&b);
    print!("{diff}");
    if !diff.is_empty() {
        println!("summary: {}", diff.summary());
    }
    Ok(ExitCode::SUCCESS)
}
