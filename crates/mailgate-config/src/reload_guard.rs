//! `reload_guard:` in `mailgate.yaml`: what a reload does when the routes it moves would
//! push a backend over its `max_sessions` budget (the sessions it kicks reconnect there).
//! The server's move planner computes the budgets; this is only the operator's choice.

use serde::Deserialize;

/// `reload_guard: warn | strict`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadGuard {
    /// Apply the reload; log a warning, count it and name the backends in the reload result.
    #[default]
    Warn,
    /// Refuse the reload: nothing changes, the error names the backends and their budgets.
    Strict,
}

impl ReloadGuard {
    /// The value as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadGuard::Warn => "warn",
            ReloadGuard::Strict => "strict",
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::path::Path;

    use super::ReloadGuard;

    const BASE: &str = "listen:\n  imap: 127.0.0.1:1143\n";

    #[test]
    fn default_is_warn_and_strict_parses() {
        let p = Path::new("/etc/mailgate/mailgate.yaml");
        let c = Config::parse(BASE, p).expect("parses");
        assert_eq!(c.reload_guard, ReloadGuard::Warn);
        let c = Config::parse(&format!("{BASE}reload_guard: strict\n"), p).expect("parses");
        assert_eq!(c.reload_guard, ReloadGuard::Strict);
        assert_eq!(c.reload_guard.as_str(), "strict");
    }

    #[test]
    fn a_reload_applies_it() {
        let p = Path::new("/etc/mailgate/mailgate.yaml");
        let old = Config::parse(BASE, p).expect("parses");
        let new = Config::parse(&format!("{BASE}reload_guard: strict\n"), p).expect("parses");
        let d = crate::ConfigDiff::between(&old, &new);
        assert_eq!(d.reloadable().collect::<Vec<_>>(), ["reload_guard"]);
        assert_eq!(d.needs_restart().count(), 0);
    }

    #[test]
    fn an_unknown_value_names_the_key_and_line() {
        let p = Path::new("/etc/mailgate/mailgate.yaml");
        let e =
            Config::parse(&format!("{BASE}reload_guard: refuse\n"), p).expect_err("unknown value");
        let d = &e.0[0];
        assert_eq!(d.line, Some(3), "{d}");
        assert!(d.to_string().contains("reload_guard"), "{d}");
    }
}
