//! The capability book: what each backend's probes saw it advertise, before login (after
//! STARTTLS when it is used) and after the probe account's login, per protocol. From it
//! come what mailgate offers clients before login (the intersection over the backends a
//! login can reach, [`CapabilityBook::advertised`]) and the drift between backends
//! ([`CapabilityBook::drift`]) that `/status`, `mailgate ctl status` and the metrics show.
//!
//! A backend not probed yet restricts nothing: until its first probe answers, mailgate
//! offers what it would offer without it (docs/health.md, "Capabilities").

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use mailgate_proto::{Advertised, Capabilities, Protocol};

/// What the probes of one backend and protocol last saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityRecord {
    /// The list a login meets (after STARTTLS / STLS when the backend uses it).
    pub pre_login: Capabilities,
    /// The list after the probe account's login (`None` without a probe account, or
    /// before its first successful login).
    pub post_login: Option<Capabilities>,
    /// When a probe last reported the lists.
    pub at: SystemTime,
    /// How often the lists changed since the first probe.
    pub changes: u64,
}

/// How a probe's lists compare with the previous ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityChange {
    /// The first lists seen for this backend and protocol.
    First,
    /// Unchanged.
    Same,
    /// Something was added or removed (names prefixed `post-login ` for the post-login
    /// list, `SASL ` for mechanisms).
    Changed {
        /// Newly advertised.
        added: Vec<String>,
        /// No longer advertised.
        removed: Vec<String>,
    },
}

/// Where a capability differs between backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Before login (IMAP `AUTH=` atoms are reported as [`Stage::Sasl`]).
    PreLogin,
    /// After login.
    PostLogin,
    /// A SASL mechanism.
    Sasl,
}

impl Stage {
    /// Lower-case label (`pre_login`, `post_login`, `sasl`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::PreLogin => "pre_login",
            Stage::PostLogin => "post_login",
            Stage::Sasl => "sasl",
        }
    }
}

/// One capability that some backends of a protocol advertise and others do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Pre-login, post-login or SASL mechanism.
    pub stage: Stage,
    /// The capability (or mechanism) name.
    pub capability: String,
    /// Backends that advertise it.
    pub with: Vec<String>,
    /// Backends that do not.
    pub without: Vec<String>,
}

/// The drift between the probed backends of one protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    /// Backends with recorded lists.
    pub probed: Vec<String>,
    /// Backends not probed yet (they restrict nothing).
    pub unprobed: Vec<String>,
    /// Every capability not shared by all probed backends, by stage and name.
    pub differences: Vec<Difference>,
}

/// The shared book; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CapabilityBook {
    records: Arc<RwLock<HashMap<(String, Protocol), CapabilityRecord>>>,
}

fn names_of(stage: Stage, caps: &Capabilities) -> BTreeSet<String> {
    match stage {
        Stage::PreLogin => caps
            .names()
            .filter(|n| !n.starts_with("AUTH="))
            .map(str::to_string)
            .collect(),
        Stage::PostLogin => caps.names().map(str::to_string).collect(),
        Stage::Sasl => caps.mechanisms().map(str::to_string).collect(),
    }
}

fn compare(
    prefix: &str,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
    change: &mut (Vec<String>, Vec<String>),
) {
    change
        .0
        .extend(new.difference(old).map(|n| format!("{prefix}{n}")));
    change
        .1
        .extend(old.difference(new).map(|n| format!("{prefix}{n}")));
}

impl CapabilityBook {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<(String, Protocol), CapabilityRecord>> {
        self.records.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<(String, Protocol), CapabilityRecord>> {
        self.records.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Record what a probe saw. `post_login: None` keeps the previous post-login list (a
    /// probe without a login says nothing about it).
    pub fn record(
        &self,
        backend: &str,
        protocol: Protocol,
        pre_login: Capabilities,
        post_login: Option<Capabilities>,
        at: SystemTime,
    ) -> CapabilityChange {
        let mut records = self.write();
        let key = (backend.to_string(), protocol);
        let Some(old) = records.get_mut(&key) else {
            records.insert(
                key,
                CapabilityRecord {
                    pre_login,
                    post_login,
                    at,
                    changes: 0,
                },
            );
            return CapabilityChange::First;
        };
        let mut change = (Vec::new(), Vec::new());
        for (stage, prefix) in [(Stage::PreLogin, ""), (Stage::Sasl, "SASL ")] {
            let before = names_of(stage, &old.pre_login);
            compare(prefix, &before, &names_of(stage, &pre_login), &mut change);
        }
        if let (Some(before), Some(now)) = (&old.post_login, &post_login) {
            let stage = Stage::PostLogin;
            compare(
                "post-login ",
                &names_of(stage, before),
                &names_of(stage, now),
                &mut change,
            );
        }
        old.pre_login = pre_login;
        if post_login.is_some() {
            old.post_login = post_login;
        }
        old.at = at;
        if change.0.is_empty() && change.1.is_empty() {
            return CapabilityChange::Same;
        }
        old.changes += 1;
        CapabilityChange::Changed {
            added: change.0,
            removed: change.1,
        }
    }

    /// The lists recorded for a backend and protocol.
    pub fn get(&self, backend: &str, protocol: Protocol) -> Option<CapabilityRecord> {
        self.read().get(&(backend.to_string(), protocol)).cloned()
    }

    /// Forget every backend `keep` refuses (removed from the routing table).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.write().retain(|(name, _), _| keep(name));
    }

    /// What the front engines of `protocol` may offer before login: only what every one
    /// of `backends` (those a login can reach) supports; unprobed ones restrict nothing.
    pub fn advertised<'a>(
        &self,
        protocol: Protocol,
        backends: impl IntoIterator<Item = &'a str>,
    ) -> Advertised {
        let records = self.read();
        let mut key = (String::new(), protocol);
        backends
            .into_iter()
            .fold(Advertised::default(), |adv, name| {
                name.clone_into(&mut key.0);
                match records.get(&key) {
                    Some(r) => adv.narrow(protocol, &r.pre_login),
                    None => adv,
                }
            })
    }

    /// The capabilities in which `backends` of `protocol` differ.
    pub fn drift<'a>(
        &self,
        protocol: Protocol,
        backends: impl IntoIterator<Item = &'a str>,
    ) -> Drift {
        let records = self.read();
        let mut drift = Drift::default();
        let mut probed: Vec<(&str, &CapabilityRecord)> = Vec::new();
        for name in backends {
            match records.get(&(name.to_string(), protocol)) {
                Some(r) => probed.push((name, r)),
                None => drift.unprobed.push(name.to_string()),
            }
        }
        drift.probed = probed.iter().map(|(n, _)| n.to_string()).collect();
        for stage in [Stage::PreLogin, Stage::Sasl, Stage::PostLogin] {
            let lists: Vec<(&str, BTreeSet<String>)> = probed
                .iter()
                .filter_map(|(n, r)| {
                    let caps = match stage {
                        Stage::PostLogin => r.post_login.as_ref()?,
                        _ => &r.pre_login,
                    };
                    Some((*n, names_of(stage, caps)))
                })
                .collect();
            let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (backend, names) in &lists {
                for n in names {
                    seen.entry(n.as_str()).or_default().push(backend);
                }
            }
            for (cap, with) in seen {
                if with.len() == lists.len() {
                    continue;
                }
                let without = lists
                    .iter()
                    .map(|(b, _)| *b)
                    .filter(|b| !with.contains(b))
                    .map(str::to_string)
                    .collect();
                drift.differences.push(Difference {
                    stage,
                    capability: cap.to_string(),
                    with: with.iter().map(|s| s.to_string()).collect(),
                    without,
                });
            }
        }
        drift
    }
}

impl fmt::Display for CapabilityChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapabilityChange::First => f.write_str("first seen"),
            CapabilityChange::Same => f.write_str("unchanged"),
            CapabilityChange::Changed { added, removed } => {
                // At most 12 names each: an upgrade can change dozens at once.
                let list = |v: &[String]| match v.len() {
                    0 => "-".to_string(),
                    n if n > 12 => format!("{} … {} more", v[..12].join(", "), n - 12),
                    _ => v.join(", "),
                };
                write!(f, "added: {}; removed: {}", list(added), list(removed))
            }
        }
    }
}

#[cfg(test)]
#[path = "capabilities_tests.rs"]
mod tests;
