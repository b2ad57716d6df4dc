//! `bytes` mode: log in once per worker, then FETCH message 1 repeatedly until the deadline;
//! reports payload throughput in MB/s (10^6 bytes, literal bytes only).

use std::time::Duration;

use mailgate_testkit::client::{ConnectOptions, ImapClient};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

use crate::{Common, round3};

async fn worker(
    opts: ConnectOptions,
    common: Common,
    deadline: Instant,
) -> anyhow::Result<(u64, u64)> {
    let mut c = timeout(common.timeout, async {
        let mut c = ImapClient::connect(&opts).await?;
        c.login(&common.user, &common.password).await?;
        c.command("SELECT INBOX").await?.ok("SELECT")?;
        anyhow::Ok(c)
    })
    .await??;
    let (mut bytes, mut fetches) = (0, 0);
    while Instant::now() < deadline {
        let r = timeout(common.timeout, c.command("FETCH 1 (BODY[])")).await??;
        bytes += r.ok("FETCH")?.literal_bytes;
        fetches += 1;
    }
    let _ = timeout(Duration::from_secs(1), c.command("LOGOUT")).await;
    Ok((bytes, fetches))
}

/// Runs the mode and returns its JSON result.
pub async fn run(common: &Common, concurrency: usize, duration: Duration) -> anyhow::Result<Value> {
    let opts = common.connect_options(256 * 1024)?;
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        set.spawn(worker(opts.clone(), common.clone(), deadline));
    }
    let (mut bytes, mut fetches, mut errors) = (0u64, 0u64, 0u64);
    let mut first_error = None;
    while let Some(r) = set.join_next().await {
        match r? {
            Ok((b, f)) => {
                bytes += b;
                fetches += f;
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(json!({
        "mode": "bytes",
        "label": common.label,
        "target": common.target.to_string(),
        "tls": common.tls,
        "concurrency": concurrency,
        "duration_s": round3(elapsed),
        "bytes": bytes,
        "fetches": fetches,
        "errors": errors,
        "first_error": first_error,
        "mb_per_s": round3(bytes as f64 / elapsed / 1e6),
    }))
}
