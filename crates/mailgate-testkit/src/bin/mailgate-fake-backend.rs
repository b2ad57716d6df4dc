//! Runs one or more fake backends as a separate process, for benchmarks (so the proxy, the
//! load generator and the backend each get their own open-file limit).
//!
//! `mailgate-fake-backend --imap 127.0.0.1:20143 --pop3 127.0.0.1:20110 --mode normal --name bench1`
//!
//! With `--tls implicit|starttls` it serves TLS with `--cert`/`--key`, or with a
//! self-signed certificate for localhost/127.0.0.1/::1 generated at start (`--cert-out FILE`
//! writes it, for a client's CA file).
//!
//! Prints one JSON line per listener when ready, and a JSON line of counters at exit
//! (SIGINT/SIGTERM or `--duration`).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mailgate_testkit::fake::{FakeBackend, FakeConfig, FaultMode, Protocol, TlsIdentity, TlsMode};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Fast fake IMAP/POP3 backends for mailgate benchmarks and tests"
)]
struct Args {
    /// IMAP listen address (repeatable).
    #[arg(long)]
    imap: Vec<SocketAddr>,
    /// POP3 listen address (repeatable).
    #[arg(long)]
    pop3: Vec<SocketAddr>,
    /// normal | no-greeting | stall-after-greeting | reset-during-login | preauth-greeting |
    /// inject-after-starttls | slow:DURATION | flapping:DURATION | login-hangs |
    /// greeting-bye | tls-stall | login-temp-fail:unavailable|sys-temp|in-use |
    /// garbage-verdict | close-after-login-ok | close-mid-fetch | stall-mid-splice
    #[arg(long, default_value = "normal")]
    mode: FaultMode,
    /// TLS towards the fake.
    #[arg(long, value_enum, default_value = "none")]
    tls: TlsMode,
    /// PEM certificate to serve (with --key); default: a generated self-signed one.
    #[arg(long, requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// Write the served certificate (PEM) here, for a client's CA file.
    #[arg(long)]
    cert_out: Option<std::path::PathBuf>,
    /// Backend name (answered in ID as x-backend).
    #[arg(long, default_value = "fake")]
    name: String,
    /// Size in bytes of the message FETCH 1 / RETR 1 returns.
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    /// Do not advertise XCLIENT on POP3.
    #[arg(long)]
    no_xclient: bool,
    /// Exit after this long (default: run until SIGINT/SIGTERM).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        !(args.imap.is_empty() && args.pop3.is_empty()),
        "give at least one --imap or --pop3 address"
    );
    // Each benchmark process needs thousands of sockets: soft limit up to the hard limit.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => TlsIdentity {
            cert_pem: std::fs::read_to_string(cert)
                .with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read_to_string(key)
                .with_context(|| format!("reading {}", key.display()))?,
        },
        _ => TlsIdentity::localhost().context("generating a certificate")?,
    };
    if let Some(out) = &args.cert_out {
        std::fs::write(out, &identity.cert_pem)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    let mut fakes = Vec::new();
    let listeners = args
        .imap
        .iter()
        .map(|a| (Protocol::Imap, *a))
        .chain(args.pop3.iter().map(|a| (Protocol::Pop3, *a)));
    for (protocol, bind) in listeners {
        let config = FakeConfig {
            protocol,
            mode: args.mode.clone(),
            name: args.name.clone(),
            bind,
            message_size: args.message_size,
            xclient: !args.no_xclient,
            password: "secret".to_owned(),
            auth_failure_delay: std::time::Duration::ZERO,
            tls: args.tls,
            tls_identity: Some(identity.clone()),
        };
        let fake = FakeBackend::spawn(config)
            .await
            .with_context(|| format!("binding {bind}"))?;
        println!(
            "{}",
            serde_json::json!({
                "event": "listening",
                "protocol": format!("{protocol:?}").to_lowercase(),
                "addr": fake.addr.to_string(),
                "mode": args.mode.to_string(),
                "tls": args.tls,
                "name": args.name,
                "nofile": nofile,
            })
        );
        fakes.push((protocol, fake));
    }
    let mut term = signal(SignalKind::terminate())?;
    let limit = args.duration.unwrap_or(Duration::from_secs(365 * 86400));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = tokio::time::sleep(limit) => {}
    }
    for (protocol, fake) in fakes {
        let s = fake.stats();
        println!(
            "{}",
            serde_json::json!({
                "event": "stats",
                "protocol": format!("{protocol:?}").to_lowercase(),
                "addr": fake.addr.to_string(),
                "connections": s.connections,
                "current_sessions": s.current_sessions,
                "logins": s.logins,
                "failed_logins": s.failed_logins,
            })
        );
        fake.shutdown().await;
    }
    Ok(())
}
