//! `logins` mode: workers loop connect → LOGIN → SELECT INBOX → FETCH 1 → LOGOUT (or, with
//! `--script noop`, connect → LOGIN → NOOP → LOGOUT) until the deadline; reports logins/s and login latency percentiles (connect start to LOGIN OK,
//! TLS handshake included).

use std::sync::Arc;
use std::time::Duration;

use mailgate_testkit::client::{ConnectOptions, ImapClient};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

use crate::{Common, percentile_ms, round3};

/// What a session does between LOGIN and LOGOUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Script {
    /// SELECT INBOX, FETCH 1 (BODY[]).
    SelectFetch,
    /// One NOOP.
    Noop,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

async fn session(
    opts: &ConnectOptions,
    common: &Common,
    script: Script,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let mut c = ImapClient::connect(opts).await?;
    c.login(&common.user, &common.password).await?;
    let login = t0.elapsed();
    match script {
        Script::SelectFetch => {
            c.command("SELECT INBOX").await?.ok("SELECT")?;
            c.command("FETCH 1 (BODY[])").await?.ok("FETCH")?;
        }
        Script::Noop => {
            c.command("NOOP").await?.ok("NOOP")?;
        }
    }
    c.command("LOGOUT").await?.ok("LOGOUT")?;
    // Let the server close first, so TIME_WAIT stays on its side, not on our ports.
    let _ = timeout(Duration::from_secs(1), c.wait_closed()).await;
    Ok(login)
}

async fn worker(
    opts: Arc<ConnectOptions>,
    common: Arc<Common>,
    deadline: Instant,
    script: Script,
) -> Tally {
    let mut t = Tally::default();
    while Instant::now() < deadline {
        match timeout(common.timeout, session(&opts, &common, script)).await {
            Ok(Ok(lat)) => t
                .latencies_us
                .push(u32::try_from(lat.as_micros()).unwrap_or(u32::MAX)),
            failed => {
                t.errors += 1;
                if t.first_error.is_none() {
                    t.first_error = Some(match failed {
                        Ok(Err(e)) => format!("{e:#}"),
                        _ => "timeout".to_owned(),
                    });
                }
                // Don't spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    t
}

/// Runs the mode and returns its JSON result.
pub async fn run(
    common: &Common,
    concurrency: usize,
    duration: Duration,
    script: Script,
) -> anyhow::Result<Value> {
    let opts = Arc::new(common.connect_options(8192)?);
    let shared = Arc::new(common.clone());
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        // With resumption, each worker is one reconnecting client with its own session
        // store (a shared store holds at most 8 TLS 1.3 tickets per server for everyone).
        let opts = match &opts.connector {
            Some(c) if !common.no_resume => {
                let mut cfg = (**c.config()).clone();
                cfg.resumption = rustls::client::Resumption::in_memory_sessions(4);
                let mut o = (*opts).clone();
                o.connector = Some(tokio_rustls::TlsConnector::from(Arc::new(cfg)));
                Arc::new(o)
            }
            _ => Arc::clone(&opts),
        };
        set.spawn(worker(opts, Arc::clone(&shared), deadline, script));
    }
    let mut all = Tally::default();
    while let Some(t) = set.join_next().await {
        let t = t?;
        all.latencies_us.extend(t.latencies_us);
        all.errors += t.errors;
        all.first_error = all.first_error.or(t.first_error);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let ok = all.latencies_us.len();
    Ok(json!({
        "mode": "logins",
        "label": common.label,
        "target": common.target.to_string(),
        "tls": common.tls,
        "resume": !common.no_resume,
        "script": script,
        "concurrency": concurrency,
        "duration_s": round3(elapsed),
        "logins": ok,
        "errors": all.errors,
        "first_error": all.first_error,
        "logins_per_s": round3(ok as f64 / elapsed),
        "p50_ms": percentile_ms(&all.latencies_us, 0.50),
        "p99_ms": percentile_ms(&all.latencies_us, 0.99),
        "max_ms": percentile_ms(&all.latencies_us, 1.0),
    }))
}
