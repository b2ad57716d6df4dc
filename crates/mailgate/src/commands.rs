//! Offline subcommands around the routing table: `check`, `route`, `routes diff` (issue #3).

use std::path::Path;
use std::process::ExitCode;

/// `mailgate check -c FILE`.
pub fn check(config: &Path) -> anyhow::Result<ExitCode> {
    let _ = config;
    anyhow::bail!("not implemented yet (issue #3)")
}

/// `mailgate route -c FILE USER`.
pub fn route(config: &Path, user: &str) -> anyhow::Result<ExitCode> {
    let _ = (config, user);
    anyhow::bail!("not implemented yet (issue #3)")
}

/// `mailgate routes diff OLD NEW`.
pub fn routes_diff(old: &Path, new: &Path) -> anyhow::Result<ExitCode> {
    let _ = (old, new);
    anyhow::bail!("not implemented yet (issue #3)")
}
