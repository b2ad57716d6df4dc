//! `idle` mode: establish N sessions (LOGIN, SELECT INBOX, IDLE) with a bounded ramp,
//! print a JSON line once all are up, hold them until a signal or the hold time, then report
//! how many were still open. Used to measure the proxy's RSS per idle session.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailgate_testkit::client::{ConnectOptions, ImapClient};
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Common, round3, source_addr};

/// What to establish and for how long.
#[derive(Debug)]
pub struct Plan {
    pub sessions: usize,
    pub ramp_concurrency: usize,
    pub sources: u8,
    pub ramp_timeout: Duration,
    pub hold: Duration,
    pub nofile: u64,
}

#[derive(Default)]
struct Counts {
    established: AtomicUsize,
    failed: AtomicUsize,
    alive: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

async fn establish(opts: &ConnectOptions, common: &Common) -> anyhow::Result<ImapClient> {
    let mut c = ImapClient::connect(opts).await?;
    c.login(&common.user, &common.password).await?;
    c.command("SELECT INBOX").await?.ok("SELECT")?;
    c.start_idle().await?;
    Ok(c)
}

/// Runs the mode; prints the "established" line itself and returns the final one.
pub async fn run(common: &Common, plan: Plan) -> anyhow::Result<Value> {
    let base = common.connect_options(1024)?;
    let sources = match plan.sources {
        0 => u8::try_from(plan.sessions / 5000 + 1)
            .unwrap_or(u8::MAX)
            .min(250),
        k => k,
    };
    let counts = Arc::new(Counts::default());
    let sem = Arc::new(Semaphore::new(plan.ramp_concurrency.max(1)));
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let start = Instant::now();
    let ramp_deadline = start + plan.ramp_timeout;
    for i in 0..plan.sessions {
        let Ok(Ok(permit)) = timeout(
            ramp_deadline.saturating_duration_since(Instant::now()),
            Arc::clone(&sem).acquire_owned(),
        )
        .await
        else {
            break;
        };
        let mut opts = base.clone();
        opts.source = source_addr(i, sources);
        let (counts, cancel, common) = (Arc::clone(&counts), cancel.clone(), common.clone());
        tracker.spawn(async move {
            let r = timeout(common.timeout, establish(&opts, &common)).await;
            drop(permit);
            let mut c = match r {
                Ok(Ok(c)) => c,
                failed => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    let msg = match failed {
                        Ok(Err(e)) => format!("{e:#}"),
                        _ => "timeout".to_owned(),
                    };
                    if let Ok(mut f) = counts.first_error.lock() {
                        f.get_or_insert(msg);
                    }
                    return;
                }
            };
            counts.established.fetch_add(1, Ordering::Relaxed);
            counts.alive.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                () = cancel.cancelled() => {}
                () = c.wait_closed() => {}
            }
            counts.alive.fetch_sub(1, Ordering::Relaxed);
        });
    }
    // Wait for the stragglers of the ramp.
    while counts.established.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed)
        < plan.sessions
        && Instant::now() < ramp_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_s = start.elapsed().as_secs_f64();
    let first_error = counts.first_error.lock().ok().and_then(|f| f.clone());
    println!(
        "{}",
        json!({
            "mode": "idle",
            "phase": "established",
            "label": common.label,
            "target": common.target.to_string(),
            "tls": common.tls,
            "requested": plan.sessions,
            "established": counts.established.load(Ordering::Relaxed),
            "failed": counts.failed.load(Ordering::Relaxed),
            "first_error": first_error,
            "ramp_s": round3(ramp_s),
            "sources": sources,
            "nofile": plan.nofile,
        })
    );
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        () = tokio::time::sleep(plan.hold) => {}
    }
    let alive = counts.alive.load(Ordering::Relaxed);
    cancel.cancel();
    tracker.close();
    let _ = timeout(Duration::from_secs(10), tracker.wait()).await;
    Ok(json!({
        "mode": "idle",
        "phase": "done",
        "label": common.label,
        "established": counts.established.load(Ordering::Relaxed),
        "alive_at_end": alive,
        "held_s": round3(start.elapsed().as_secs_f64() - ramp_s),
    }))
}
