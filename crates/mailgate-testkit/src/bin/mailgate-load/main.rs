//! mailgate's load generator, a separate process: login throughput (`logins`), many idle
//! IMAP IDLE sessions for memory measurements (`idle`), and FETCH throughput (`bytes`).
//! Every run prints one line of JSON on stdout (`idle` prints one when all sessions are
//! established and one at the end). Loopback targets only; every loop is bounded in time.
#![forbid(unsafe_code)]

mod bytes;
mod idle;
mod logins;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::{Args as ClapArgs, Parser, Subcommand};
use mailgate_testkit::client::{ConnectOptions, SuiteOrder, TlsMode, tls_connector_with};
use rustls_pki_types::ServerName;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Load generator for mailgate benchmarks (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// N workers doing connect/LOGIN/SELECT/FETCH/LOGOUT for a duration.
    Logins {
        #[command(flatten)]
        common: Common,
        /// Concurrent workers.
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// How long to run.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Session script after LOGIN: `select-fetch` (SELECT INBOX, FETCH 1) or `noop`
        /// (one NOOP), then LOGOUT.
        #[arg(long, value_enum, default_value = "select-fetch")]
        script: logins::Script,
    },
    /// Open N sessions, log in, IDLE, hold them until a signal or --hold.
    Idle {
        #[command(flatten)]
        common: Common,
        /// Sessions to establish.
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// Sessions being established at the same time.
        #[arg(long, default_value_t = 200)]
        ramp_concurrency: usize,
        /// Spread source addresses over 127.0.0.1..=127.0.0.K (0 = automatic: one per
        /// 5,000 sessions).
        #[arg(long, default_value_t = 0)]
        sources: u8,
        /// Give up establishing after this long.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        ramp_timeout: Duration,
        /// Hold the sessions this long at most (SIGINT/SIGTERM ends earlier).
        #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
        hold: Duration,
    },
    /// FETCH the (large) message 1 repeatedly; report MB/s.
    Bytes {
        #[command(flatten)]
        common: Common,
        /// Concurrent sessions.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// How long to run.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
}

/// Options every mode shares.
#[derive(Debug, Clone, ClapArgs)]
struct Common {
    /// Server address; must be loopback.
    #[arg(long)]
    target: SocketAddr,
    /// Transport to the server.
    #[arg(long, value_enum, default_value = "none")]
    tls: TlsMode,
    /// PEM file of the CA to trust (required with --tls starttls|implicit).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// TLS server name to verify.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Login user.
    #[arg(long, default_value = "user@example.com")]
    user: String,
    /// Login password.
    #[arg(long, default_value = "secret")]
    password: String,
    /// Timeout for each session step sequence.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Full TLS handshakes only: no session resumption (no tickets, no session IDs).
    #[arg(long)]
    no_resume: bool,
    /// List the cipher suites AES-128-GCM first, as NSS (Thunderbird) and Apple's stack do,
    /// instead of rustls' AES-256-GCM first.
    #[arg(long)]
    aes128_first: bool,
    /// A label copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
}

impl Common {
    fn connect_options(&self, read_buffer: usize) -> anyhow::Result<ConnectOptions> {
        ensure!(
            self.target.ip().is_loopback(),
            "--target must be a loopback address, got {}",
            self.target
        );
        let connector = match (&self.ca, self.tls) {
            (_, TlsMode::None) => None,
            (Some(ca), _) => {
                let order = if self.aes128_first {
                    SuiteOrder::Nss
                } else {
                    SuiteOrder::Rustls
                };
                Some(tls_connector_with(ca, !self.no_resume, order)?)
            }
            (None, _) => anyhow::bail!("--tls {:?} needs --ca FILE", self.tls),
        };
        let server_name = ServerName::try_from(self.server_name.clone())
            .context("--server-name is not a valid DNS name or IP")?;
        Ok(ConnectOptions {
            target: self.target,
            source: None,
            tls: self.tls,
            connector,
            server_name,
            read_buffer,
        })
    }
}

/// The `n`th of `k` loopback source addresses (127.0.0.1 ..= 127.0.0.k).
fn source_addr(n: usize, k: u8) -> Option<IpAddr> {
    (k > 1).then(|| IpAddr::from([127, 0, 0, 1 + (n % usize::from(k)) as u8]))
}

/// Percentile of sorted microsecond samples, in milliseconds.
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let idx = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted_us[idx.min(sorted_us.len() - 1)]) / 1000.0
}

/// Rounds for readable JSON.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Thousands of sockets: soft open-file limit up to the hard limit.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
    let out = match cli.mode {
        Mode::Logins {
            common,
            concurrency,
            duration,
            script,
        } => logins::run(&common, concurrency, duration, script).await?,
        Mode::Idle {
            common,
            sessions,
            ramp_concurrency,
            sources,
            ramp_timeout,
            hold,
        } => {
            let plan = idle::Plan {
                sessions,
                ramp_concurrency,
                sources,
                ramp_timeout,
                hold,
                nofile,
            };
            idle::run(&common, plan).await?
        }
        Mode::Bytes {
            common,
            concurrency,
            duration,
        } => bytes::run(&common, concurrency, duration).await?,
    };
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_sources() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.5), 51.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.99), 0.0);
        assert_eq!(source_addr(5, 1), None);
        assert_eq!(source_addr(5, 4), Some(IpAddr::from([127, 0, 0, 2])));
    }
}
