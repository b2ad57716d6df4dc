//! The `mailgate` binary: command line parsing and dispatch. Everything else is in the
//! library so that tests can drive it with their own listeners and shutdown.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// IMAP/POP3 front proxy with login-aware routing and health-checked backends.
#[derive(Debug, Parser)]
#[command(name = "mailgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// Main configuration file.
        #[arg(short, long, default_value = "/etc/mailgate/mailgate.yaml")]
        config: PathBuf,
    },
    /// Validate the configuration and routing file; exit 1 listing every error.
    Check {
        /// Main configuration file.
        #[arg(short, long, default_value = "/etc/mailgate/mailgate.yaml")]
        config: PathBuf,
    },
    /// Print the backend USER routes to, and which rule matched.
    Route {
        /// Main configuration file.
        #[arg(short, long, default_value = "/etc/mailgate/mailgate.yaml")]
        config: PathBuf,
        /// Login name, e.g. alice@example.com.
        user: String,
    },
    /// Routing file tools.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RoutesCommand {
    /// Which domains and users would move between two routing files (dry run of an edit).
    Diff {
        /// The routing file in force.
        old: PathBuf,
        /// The edited routing file.
        new: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => mailgate::run_from_config(&config),
        Command::Check { config } => mailgate::commands::check(&config),
        Command::Route { config, user } => mailgate::commands::route(&config, &user),
        Command::Routes {
            command: RoutesCommand::Diff { old, new },
        } => mailgate::commands::routes_diff(&old, &new),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mailgate: {err:#}");
            ExitCode::FAILURE
        }
    }
}
