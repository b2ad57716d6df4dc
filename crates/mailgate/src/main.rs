//! The `mailgate` binary: command line parsing and dispatch. Everything else is in the
//! library so that tests can drive it with their own listeners and shutdown.
#![forbid(unsafe_code)]

mod manpage;

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
    ///
    /// With --against OLD (the mailgate.yaml in force), also say which changed keys a
    /// reload applies and which need a restart (exit 3: valid, but a reload would be
    /// refused).
    Check {
        /// Main configuration file.
        #[arg(short, long, default_value = "/etc/mailgate/mailgate.yaml")]
        config: PathBuf,
        /// The mailgate.yaml the running process loaded (e.g. a copy kept before editing).
        #[arg(long, value_name = "OLD")]
        against: Option<PathBuf>,
    },
    /// Print the backend USER routes to, and which rule matched.
    Route {
        /// Main configuration file.
        #[arg(short, long, default_value = "/etc/mailgate/mailgate.yaml")]
        config: PathBuf,
        /// Login name, e.g. alice@example.com, or Dovecot's master-user form
        /// alice@example.com*master (routes on alice@example.com).
        user: String,
        /// SASL PLAIN authorization identity: USER (e.g. a master user) logs in for this
        /// mailbox, and the login routes on it.
        #[arg(long)]
        authzid: Option<String>,
    },
    /// Routing file tools.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Talk to a running mailgate's admin API (status, drain, undrain, reload, kick).
    Ctl(CtlArgs),
    /// Write man pages and shell completions (bash, zsh, fish) under --out (packaging).
    #[command(hide = true)]
    Assets {
        /// Directory to write man/ and completions/ into.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct CtlArgs {
    /// Admin address; several instances: comma-separated or repeated
    /// [default: listen.admin of --config, else http://127.0.0.1:9143].
    #[arg(long, global = true, value_delimiter = ',')]
    admin: Vec<String>,
    /// Address every A/AAAA record of each --admin host name (same port), e.g. a
    /// headless Service that resolves to all instances.
    #[arg(long, global = true)]
    all_addresses: bool,
    /// DNS server (IP:PORT) for --all-addresses instead of the system's resolver.
    #[arg(long, global = true, value_name = "IP:PORT")]
    nameserver: Option<std::net::SocketAddr>,
    /// Main configuration file: admin address and token file are taken from it.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// File holding the admin token [default: $MAILGATE_ADMIN_TOKEN, else admin.token_file of --config].
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Every backend's state, drain flag, sessions, budget and last probe.
    Status {
        /// Print the raw JSON of GET /status.
        #[arg(long)]
        json: bool,
    },
    /// Refuse new logins for a backend (existing sessions stay unless kicked).
    Drain {
        /// Backend name from the routing file.
        name: String,
        /// Why (one line, shown on /status and kept in admin.state_file).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Admit new logins for a drained backend again.
    Undrain {
        /// Backend name from the routing file.
        name: String,
    },
    /// Reload mailgate.yaml, the routing file, certificates and admin token.
    Reload {
        /// Change nothing: print what a reload would apply and which changes need a
        /// restart (exit 3 when some do).
        #[arg(long)]
        dry_run: bool,
    },
    /// Start the binary at the running one's path as a new process that takes over the
    /// listening sockets; the old one drains its sessions (docs/operations.md).
    Upgrade,
    /// Close spliced sessions of a backend, a domain or a user, spread over a window.
    #[command(group(clap::ArgGroup::new("selector").required(true)))]
    Kick {
        /// All sessions on this backend.
        #[arg(long, group = "selector")]
        backend: Option<String>,
        /// All sessions of this domain.
        #[arg(long, group = "selector")]
        domain: Option<String>,
        /// All sessions of this user (user@domain).
        #[arg(long, group = "selector")]
        user: Option<String>,
        /// Spread the closes over this time (e.g. 30s) [default: health.kick_window].
        #[arg(long)]
        window: Option<String>,
        /// Only say what would close (by backend and domain); close nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: name the users too.
        #[arg(long, requires = "dry_run")]
        users: bool,
    },
    /// What a candidate routing file would do against the running table: the moves, the
    /// live sessions each would kick, every backend's budget after it; or its errors.
    Plan {
        /// The candidate routing file.
        file: PathBuf,
        /// Name the users of each move.
        #[arg(long)]
        users: bool,
        /// Print the raw JSON of POST /routes/plan.
        #[arg(long)]
        json: bool,
    },
    /// Live sessions by backend and domain (counts; --users names the users).
    Sessions {
        /// Name the users.
        #[arg(long)]
        users: bool,
        /// Print the raw JSON of GET /sessions.
        #[arg(long)]
        json: bool,
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

fn ctl(args: CtlArgs) -> ExitCode {
    use mailgate::admin::ctl;
    let command = match args.command {
        CtlCommand::Status { json } => ctl::Command::Status { json },
        CtlCommand::Drain { name, reason } => ctl::Command::Drain { name, reason },
        CtlCommand::Undrain { name } => ctl::Command::Undrain(name),
        CtlCommand::Reload { dry_run: false } => ctl::Command::Reload,
        CtlCommand::Reload { dry_run: true } => ctl::Command::ReloadDryRun,
        CtlCommand::Upgrade => ctl::Command::Upgrade,
        CtlCommand::Kick {
            backend,
            domain,
            user,
            window,
            dry_run,
            users,
        } => ctl::Command::Kick {
            backend,
            domain,
            user,
            window,
            dry_run,
            users,
        },
        CtlCommand::Plan { file, users, json } => ctl::Command::Plan { file, users, json },
        CtlCommand::Sessions { users, json } => ctl::Command::Sessions { users, json },
    };
    let how = ctl::fleet::Addressing {
        admins: args.admin,
        all_addresses: args.all_addresses,
        nameserver: args.nameserver,
    };
    match ctl::resolve_target(None, args.config.as_deref(), args.token_file.as_deref()) {
        Ok(base) => ctl::fleet::run(&base, &how, &command),
        Err(err) => {
            eprintln!("mailgate ctl: {err}");
            ExitCode::from(2)
        }
    }
}

/// `mailgate assets --out DIR`: the man pages and completions `make deb` ships.
fn assets(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use clap::CommandFactory;
    let written = manpage::write_all(Cli::command(), out)
        .with_context(|| format!("cannot write to {}", out.display()))?;
    for p in written.man.iter().chain(&written.completions) {
        println!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => mailgate::run_from_config(&config),
        Command::Check { config, against } => match against {
            None => mailgate::commands::check(&config),
            Some(old) => mailgate::commands::check_against(&config, &old),
        },
        Command::Route {
            config,
            user,
            authzid,
        } => mailgate::commands::route(&config, &user, authzid.as_deref()),
        Command::Routes {
            command: RoutesCommand::Diff { old, new },
        } => mailgate::commands::routes_diff(&old, &new),
        Command::Ctl(args) => return ctl(args),
        Command::Assets { out } => assets(&out),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mailgate: {err:#}");
            ExitCode::FAILURE
        }
    }
}
