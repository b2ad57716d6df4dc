//! mailgate server: listeners, TLS, session drivers, upstream login relay, splice,
//! admin HTTP, metrics, shutdown. The binary (`main.rs`) only parses the command line.
#![forbid(unsafe_code)]

pub mod commands;

use std::path::Path;
use std::process::ExitCode;

/// `mailgate run`: load the configuration and serve until SIGTERM/SIGINT.
pub fn run_from_config(config: &Path) -> anyhow::Result<ExitCode> {
    let _ = config;
    anyhow::bail!("mailgate run is not implemented yet (issue #4)")
}
