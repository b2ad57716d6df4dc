//! The client listeners in force, and how a reload changes them: a listener added to
//! `listen:` is bound and starts accepting, a removed one stops accepting (its socket is
//! closed, so new connections are refused) while the sessions it accepted continue, and
//! a moved one is both. Binding comes first, in [`ListenerSet::prepare`], so that a reload
//! whose new address cannot be bound changes nothing; [`ListenerSet::apply`] then swaps.
//!
//! Listeners are compared by their configured address (`listen.imap` etc.), not by the
//! address the kernel gave a port-0 listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use mailgate_config::Listen;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backend::BackendClient;
use crate::endpoint::ListenerKind;
use crate::listener;
use crate::session::SessionContext;

/// A new listener address that cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("{key}: cannot bind {addr}: {source}")]
pub struct ListenerError {
    /// `listen.imap`, `listen.imaps`, `listen.pop3`, `listen.pop3s`.
    pub key: String,
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

#[derive(Debug)]
struct Running {
    configured: SocketAddr,
    local: SocketAddr,
    stop: CancellationToken,
}

/// Listeners bound for a reload, not yet accepting.
#[derive(Debug, Default)]
pub struct ListenerPlan {
    add: Vec<(ListenerKind, SocketAddr, TcpListener)>,
    remove: Vec<ListenerKind>,
}

impl ListenerPlan {
    /// No listener changes.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// The running client listeners.
#[derive(Debug)]
pub struct ListenerSet {
    ctx: Arc<SessionContext>,
    backends: Arc<BackendClient>,
    running: Mutex<HashMap<ListenerKind, Running>>,
}

/// The configured address of `kind` in `listen:`.
pub fn configured(listen: &Listen, kind: ListenerKind) -> Option<SocketAddr> {
    match kind {
        ListenerKind::Imap => listen.imap,
        ListenerKind::Imaps => listen.imaps,
        ListenerKind::Pop3 => listen.pop3,
        ListenerKind::Pop3s => listen.pop3s,
    }
}

impl ListenerSet {
    /// No listener yet; sessions get `ctx`, the loop guard of `backends` is kept current.
    pub fn new(ctx: Arc<SessionContext>, backends: Arc<BackendClient>) -> Self {
        ListenerSet {
            ctx,
            backends,
            running: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ListenerKind, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start accepting on `l`, configured as `configured` (`listen.<kind>`).
    pub fn start(&self, kind: ListenerKind, configured: SocketAddr, l: TcpListener) {
        let local = l.local_addr().unwrap_or(configured);
        let stop = CancellationToken::new();
        let (ctx, token) = (self.ctx.clone(), stop.clone());
        tracing::info!(listener = kind.name(), addr = %local, "listening");
        tokio::spawn(async move {
            tokio::select! {
                _ = listener::accept_loop(ctx, kind, l) => {}
                _ = token.cancelled() => {
                    tracing::info!(
                        listener = kind.name(),
                        addr = %local,
                        "listener removed from the configuration: no longer accepting; its sessions continue"
                    );
                }
            }
        });
        let old = self.lock().insert(
            kind,
            Running {
                configured,
                local,
                stop,
            },
        );
        if let Some(old) = old {
            old.stop.cancel();
        }
    }

    /// Bind what `listen` adds or moves; nothing changes yet (dropping the plan closes the
    /// new sockets).
    pub fn prepare(&self, listen: &Listen) -> Result<ListenerPlan, ListenerError> {
        let running: HashMap<ListenerKind, SocketAddr> = self
            .lock()
            .iter()
            .map(|(k, r)| (*k, r.configured))
            .collect();
        let mut plan = ListenerPlan::default();
        for kind in ListenerKind::ALL {
            let old = running.get(&kind).copied();
            let new = configured(listen, kind);
            if old == new {
                continue;
            }
            if old.is_some() {
                plan.remove.push(kind);
            }
            if let Some(addr) = new {
                let l = listener::bind(addr).map_err(|source| ListenerError {
                    key: format!("listen.{}", kind.name()),
                    addr,
                    source,
                })?;
                plan.add.push((kind, addr, l));
            }
        }
        Ok(plan)
    }

    /// What [`ListenerSet::prepare`] and [`ListenerSet::apply`] would change, without
    /// binding anything (a dry run), one line per change.
    pub fn preview(&self, listen: &Listen) -> Vec<String> {
        let running = self.lock();
        let mut changes = Vec::new();
        for kind in ListenerKind::ALL {
            let old = running.get(&kind);
            let new = configured(listen, kind);
            if old.map(|r| r.configured) == new {
                continue;
            }
            if let Some(r) = old {
                changes.push(format!("listen.{} {} removed", kind.name(), r.local));
            }
            if let Some(addr) = new {
                changes.push(format!("listen.{} {addr} added", kind.name()));
            }
        }
        changes
    }

    /// Stop the removed listeners, start the added ones, update the loop guard. Returns
    /// one line per change, for the reload log.
    pub fn apply(&self, plan: ListenerPlan) -> Vec<String> {
        let mut changes = Vec::new();
        for kind in plan.remove {
            if let Some(r) = self.lock().remove(&kind) {
                r.stop.cancel();
                changes.push(format!("listen.{} {} removed", kind.name(), r.local));
            }
        }
        for (kind, addr, l) in plan.add {
            self.start(kind, addr, l);
            changes.push(format!("listen.{} {addr} added", kind.name()));
        }
        if !changes.is_empty() {
            self.update_loop_guard();
        }
        changes
    }

    /// Tell the backend client which addresses are mailgate's own (it never dials them).
    pub fn update_loop_guard(&self) {
        let own = self
            .addrs()
            .into_iter()
            .map(|(k, a)| (k.name(), a))
            .collect();
        self.backends.set_own_listeners(own);
    }

    /// The listeners accepting now: kind and bound address.
    pub fn addrs(&self) -> Vec<(ListenerKind, SocketAddr)> {
        let mut v: Vec<_> = self.lock().iter().map(|(k, r)| (*k, r.local)).collect();
        v.sort_by_key(|(k, _)| k.name());
        v
    }
}
