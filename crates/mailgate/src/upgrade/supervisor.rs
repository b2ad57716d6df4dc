//! The task that watches a serving process's life: readiness (to the old process of an
//! upgrade, and to systemd), upgrade requests (`SIGUSR2`, `POST /upgrade`), systemd's
//! reload protocol for SIGHUP, the watchdog, and the end — a SIGTERM/SIGINT, or the
//! drain after a new process took over. Its [`Supervisor::run`] is the future the proxy's
//! shutdown sequence waits for.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::UpgradeError;
use super::child::ParentLink;
use super::parent::{self, Successor};
use super::systemd::{self, Notifier};
use crate::admin::AdminHandle;
use crate::lifecycle::{Lifecycle, UpgradeDone, UpgradeRequest, UpgradeResult};
use crate::proxy::Proxy;
use crate::reload::{ReloadHandle, Trigger};

/// The admin server, stopped by whoever comes first: the hand-over or the end of the
/// shutdown sequence.
#[derive(Debug, Clone, Default)]
pub struct AdminSlot(Arc<Mutex<Option<AdminHandle>>>);

impl AdminSlot {
    /// Hold `admin`.
    pub fn new(admin: AdminHandle) -> AdminSlot {
        AdminSlot(Arc::new(Mutex::new(Some(admin))))
    }

    /// Stop the admin server (once; later calls do nothing).
    pub async fn stop(&self) {
        let taken = self.0.lock().await.take();
        if let Some(admin) = taken {
            admin.stop().await;
        }
    }
}

/// Readiness, upgrades, systemd; see the module docs.
#[derive(Debug)]
pub struct Supervisor {
    lifecycle: Arc<Lifecycle>,
    reload: ReloadHandle,
    upgrade_grace: Duration,
    parent: Option<ParentLink>,
    notifier: Option<Notifier>,
    requests: Option<mpsc::Receiver<UpgradeRequest>>,
    usr2: Option<Signal>,
    hup: Option<Signal>,
}

type Replies = Vec<oneshot::Sender<UpgradeResult>>;

/// A running attempt to start a successor.
type Attempt = std::pin::Pin<Box<dyn Future<Output = Result<Successor, UpgradeError>> + Send>>;

impl Supervisor {
    /// Registers the SIGUSR2 (and under systemd the SIGHUP) handler now, before anything
    /// reports ready.
    pub fn new(proxy: &Proxy, parent: Option<ParentLink>) -> Supervisor {
        let notifier = Notifier::from_env();
        let usr2 = signal(SignalKind::user_defined2())
            .map_err(
                |e| tracing::warn!(error = %e, "cannot handle SIGUSR2; upgrade via the admin API"),
            )
            .ok();
        let hup = notifier
            .as_ref()
            .and_then(|_| signal(SignalKind::hangup()).ok());
        Supervisor {
            lifecycle: proxy.admin_context().lifecycle,
            reload: proxy.reloader().clone(),
            upgrade_grace: proxy.config().upgrade_grace,
            parent,
            notifier,
            requests: proxy.lifecycle().take_upgrade_requests(),
            usr2,
            hup,
        }
    }

    /// Report ready, then serve upgrade requests until `terminate` resolves or a new
    /// process took over and this one's sessions are drained.
    pub async fn run(mut self, admin: AdminSlot, terminate: impl Future<Output = ()>) {
        tokio::pin!(terminate);
        if let Some(link) = self.parent.take() {
            link.ready().await;
        }
        if let Some(n) = &self.notifier {
            n.send("READY=1");
        }
        self.spawn_watchdog();
        let mut attempt: Option<Attempt> = None;
        let cancel = CancellationToken::new();
        let mut replies: Replies = Vec::new();
        let successor: Successor = loop {
            tokio::select! {
                _ = &mut terminate => {
                    if let Some(n) = &self.notifier {
                        n.send("STOPPING=1");
                    }
                    if attempt.is_some() {
                        // Stop the new process rather than leave it serving on its own.
                        cancel.cancel();
                        let _ = tokio::time::timeout(Duration::from_secs(10), poll_attempt(&mut attempt)).await;
                    }
                    fail_all(&mut replies, "shutting down");
                    return;
                }
                Some(req) = recv(&mut self.requests) => {
                    self.begin(&mut attempt, &mut replies, req.reply, &cancel, "admin API");
                }
                Some(()) = recv_signal(&mut self.usr2) => {
                    self.begin(&mut attempt, &mut replies, None, &cancel, "SIGUSR2");
                }
                Some(()) = recv_signal(&mut self.hup) => self.spawn_systemd_reload(),
                result = poll_attempt(&mut attempt) => {
                    match result {
                        Ok(s) => break s,
                        Err(e) => {
                            tracing::error!(error = %e, "upgrade failed; this process stays in charge");
                            fail_all(&mut replies, &e.to_string());
                        }
                    }
                }
            }
        };
        self.drain(successor, replies, admin, terminate).await;
    }

    fn begin(
        &self,
        attempt: &mut Option<Attempt>,
        replies: &mut Replies,
        reply: Option<oneshot::Sender<UpgradeResult>>,
        cancel: &CancellationToken,
        by: &'static str,
    ) {
        if attempt.is_some() {
            tracing::warn!(by, "upgrade requested while one is in progress: ignored");
            if let Some(r) = reply {
                let _ = r.send(Err(UpgradeError::Busy.to_string()));
            }
            return;
        }
        tracing::info!(by, "upgrade requested: starting the new binary");
        replies.extend(reply);
        *attempt = Some(Box::pin(parent::start_successor(cancel.child_token())));
    }

    /// The new process is ready: stop accepting, hand over, drain.
    async fn drain(
        self,
        successor: Successor,
        mut replies: Replies,
        admin: AdminSlot,
        terminate: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) {
        let done = UpgradeDone {
            new_pid: successor.pid,
            old_pid: std::process::id(),
        };
        if let Some(n) = &self.notifier {
            n.send(&format!("MAINPID={}", done.new_pid));
        }
        self.lifecycle.begin_handover();
        let handed = successor.handed.join(",");
        successor.hand_over().await;
        for r in replies.drain(..) {
            let _ = r.send(Ok(done));
        }
        // The admin socket is the new process's now; this one answers no more requests.
        admin.stop().await;
        let grace = self.upgrade_grace;
        tracing::info!(
            new_pid = done.new_pid,
            listeners = %handed,
            sessions = self.lifecycle.sessions(),
            grace_secs = grace.as_secs_f64(),
            "upgrade: the new process took over; this one accepts no more and drains its sessions"
        );
        tokio::select! {
            _ = self.lifecycle.all_ended() => {
                tracing::info!("upgrade: every session of the old process ended");
            }
            _ = tokio::time::sleep(grace) => {
                tracing::warn!(
                    left = self.lifecycle.sessions(),
                    "upgrade grace over; closing the remaining sessions spread over shutdown_close_window"
                );
                self.lifecycle.mark_grace_served();
            }
            _ = terminate => {
                tracing::info!("signal during the upgrade drain: ordinary shutdown");
            }
        }
    }

    /// Whether SIGHUP is this supervisor's (under systemd's notify protocol), so the
    /// reloader must not take it too.
    pub fn handles_sighup(&self) -> bool {
        self.hup.is_some()
    }

    /// `Type=notify-reload`: RELOADING=1 with the time, the reload, READY=1.
    fn spawn_systemd_reload(&self) {
        let (Some(n), false) = (self.notifier.clone(), self.lifecycle.is_handed_over()) else {
            return;
        };
        let reload = self.reload.clone();
        tokio::spawn(async move {
            n.send(&systemd::reloading_message());
            let status = match reload.reload(Trigger::Signal).await {
                Ok(_) => "STATUS=reloaded".to_string(),
                Err(e) => {
                    let first = e.to_string().lines().next().unwrap_or("").to_string();
                    format!(
                        "STATUS=reload failed: {}",
                        first.chars().take(200).collect::<String>()
                    )
                }
            };
            n.send(&format!("READY=1\n{status}"));
        });
    }

    /// WATCHDOG=1 at half of WATCHDOG_USEC, from a task on the async runtime (a runtime
    /// that no longer schedules tasks misses it), while this process is in charge.
    fn spawn_watchdog(&self) {
        let (Some(n), Some(every)) = (self.notifier.clone(), systemd::watchdog_interval()) else {
            return;
        };
        let lifecycle = self.lifecycle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if lifecycle.is_handed_over() {
                    break;
                }
                n.send("WATCHDOG=1");
            }
        });
    }
}

async fn recv(rx: &mut Option<mpsc::Receiver<UpgradeRequest>>) -> Option<UpgradeRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The attempt's outcome; pending while there is none. The attempt is cleared when done.
async fn poll_attempt(attempt: &mut Option<Attempt>) -> Result<Successor, UpgradeError> {
    let Some(a) = attempt.as_mut() else {
        return std::future::pending().await;
    };
    let result = a.await;
    *attempt = None;
    result
}

async fn recv_signal(sig: &mut Option<Signal>) -> Option<()> {
    match sig {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

fn fail_all(replies: &mut Replies, why: &str) {
    for r in replies.drain(..) {
        let _ = r.send(Err(why.to_string()));
    }
}
