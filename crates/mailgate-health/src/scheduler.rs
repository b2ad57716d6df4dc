//! The probe scheduler: one task per (backend, protocol) that probes every `interval`
//! (plus jitter) and feeds the result into the [`HealthView`].
//!
//! Probes of one target start every `interval` (+ jitter), whether or not the previous
//! one has finished, with at most two in flight (see `MAX_IN_FLIGHT`). The first probe
//! of a target starts at a random point within one interval, so that probes of many
//! backends do not all fire together. Settings are re-read before every probe, so a
//! reload that changes `interval` or `timeout` applies without restarting the scheduler;
//! [`ProbeScheduler::settings_changed`] also brings the next probe forward when the new
//! interval is shorter than what is left of the old one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::probe::{BackendTarget, ProbeError, ProbeOutcome, ProbeStep, Prober};
use crate::view::HealthView;

/// Handle of the running scheduler.
#[derive(Debug)]
pub struct ProbeScheduler {
    targets: watch::Sender<Vec<BackendTarget>>,
    settings: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl ProbeScheduler {
    /// Start probing `targets` on the current tokio runtime. The scheduler and all its
    /// probes stop when `shutdown` is cancelled.
    pub fn spawn(
        view: HealthView,
        prober: Arc<dyn Prober>,
        targets: Vec<BackendTarget>,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = watch::channel(targets);
        let (settings, settings_rx) = watch::channel(0);
        let task = tokio::spawn(supervise(view, prober, rx, settings_rx, shutdown));
        ProbeScheduler {
            targets: tx,
            settings,
            task,
        }
    }

    /// The view's settings were replaced (config reload): every target whose next probe
    /// is further away than a new interval (with the first probe's random offset) is
    /// probed sooner; health state and counters are untouched.
    pub fn settings_changed(&self) {
        self.settings.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Replace the set of targets (routing reload): new targets start probing, removed
    /// ones stop (their protocol is forgotten by the view), unchanged ones continue
    /// undisturbed.
    pub fn set_targets(&self, targets: Vec<BackendTarget>) {
        self.targets.send_replace(targets);
    }

    /// Wait until the scheduler has stopped (after the shutdown token was cancelled).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "probe scheduler task failed");
        }
    }
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

async fn supervise(
    view: HealthView,
    prober: Arc<dyn Prober>,
    mut targets: watch::Receiver<Vec<BackendTarget>>,
    settings: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let mut running: HashMap<BackendTarget, Running> = HashMap::new();
    loop {
        let wanted: Vec<BackendTarget> = targets.borrow_and_update().clone();
        running.retain(|target, r| {
            if wanted.contains(target) {
                return true;
            }
            r.stop.cancel();
            view.forget_protocol(&target.backend, target.protocol);
            false
        });
        for target in wanted {
            if running.contains_key(&target) {
                continue;
            }
            let stop = shutdown.child_token();
            let task = tokio::spawn(probe_loop(
                view.clone(),
                Arc::clone(&prober),
                target.clone(),
                settings.clone(),
                stop.clone(),
            ));
            running.insert(target, Running { stop, task });
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = targets.changed() => {
                if changed.is_err() {
                    // The handle was dropped: keep probing the last targets until shutdown.
                    shutdown.cancelled().await;
                    break;
                }
            }
        }
    }
    for (_, r) in running {
        r.stop.cancel();
        let _ = r.task.await;
    }
}

fn jittered(interval: Duration, jitter: f64) -> Duration {
    interval + interval.mul_f64(jitter.clamp(0.0, 1.0) * fastrand::f64())
}

/// Most probes of one target in flight at once. Probes start on a fixed cadence even
/// while an earlier one still waits for its timeout — so a deadlocked backend is down
/// within about `interval * fall + timeout` — but a hanging backend gets no more than
/// this many probe connections from us.
const MAX_IN_FLIGHT: usize = 2;

async fn probe_loop(
    view: HealthView,
    prober: Arc<dyn Prober>,
    target: BackendTarget,
    mut settings_changed: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Dropped (aborting in-flight probes) when this loop returns.
    let mut probes = JoinSet::new();
    let mut tick = Instant::now() + view.settings().interval.mul_f64(fastrand::f64());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(tick) => {}
            Ok(()) = settings_changed.changed() => {
                let s = view.settings();
                let sooner = Instant::now() + s.interval.mul_f64(fastrand::f64());
                tick = tick.min(sooner);
                continue;
            }
        }
        while probes.try_join_next().is_some() {}
        let settings = view.settings();
        tick += jittered(settings.interval, settings.jitter);
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            tracing::debug!(backend = %target.backend, protocol = %target.protocol,
                "probe skipped: earlier probes still running");
            continue;
        };
        let (view, prober, target) = (view.clone(), Arc::clone(&prober), target.clone());
        let deadline = settings.probe_deadline();
        probes.spawn(async move {
            let outcome = tokio::time::timeout(deadline, prober.probe(&target))
                .await
                .unwrap_or_else(|_| {
                    ProbeOutcome::failed(ProbeError::timeout(ProbeStep::Probe, deadline), deadline)
                });
            if let Err(e) = &outcome.result {
                tracing::debug!(backend = %target.backend, protocol = %target.protocol,
                    error = %e, "probe failed");
            }
            view.record_probe(
                &target.backend,
                target.protocol,
                &outcome,
                Instant::now().into_std(),
            );
            drop(permit);
        });
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
