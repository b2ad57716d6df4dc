//! What changes between two routing tables: which domains, wildcards and users would be
//! served by another backend, and which backends appeared, disappeared or changed. A reload
//! logs it; the health side uses it (or [`RoutingTable::route_changed`]) to kick only the
//! sessions whose route moved; `mailgate routes diff` prints it before an edit is saved.

use std::borrow::Cow;
use std::fmt;

use crate::normalize::Login;
use crate::table::{Backend, RoutingTable};

/// One key whose effective backend changes (`None`: no route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// Normalised domain, `*.suffix`, or `user@domain`.
    pub key: String,
    /// Backend before.
    pub old: Option<String>,
    /// Backend after.
    pub new: Option<String>,
}

/// A backend present in both tables whose settings differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendChange {
    /// Backend name.
    pub name: String,
    /// The keys that differ, e.g. `["host", "imap_port"]`.
    pub fields: Vec<&'static str>,
}

impl BackendChange {
    /// Whether the backend's address (host, ports, TLS) changed: its sessions point elsewhere.
    pub fn address_changed(&self) -> bool {
        self.fields
            .iter()
            .any(|f| matches!(*f, "host" | "imap_port" | "pop3_port" | "tls"))
    }
}

/// The difference between an older and a newer table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingDiff {
    /// Exact domains and wildcard rules whose effective backend changes.
    pub domains: Vec<Move>,
    /// User overrides whose effective backend changes.
    pub users: Vec<Move>,
    /// Default backend change (old, new).
    pub default: Option<(Option<String>, Option<String>)>,
    /// `default_domain` change (old, new).
    pub default_domain: Option<(Option<String>, Option<String>)>,
    /// `master_user_separator` change (old, new; `None` = the master-user form is off).
    /// Moves no live session (they are keyed on the mailbox user), but changes where the
    /// next `user*master` login goes.
    pub master_user_separator: Option<(Option<char>, Option<char>)>,
    /// Backends only in the newer table.
    pub backends_added: Vec<String>,
    /// Backends only in the older table.
    pub backends_removed: Vec<String>,
    /// Backends in both whose settings differ.
    pub backends_changed: Vec<BackendChange>,
}

impl RoutingDiff {
    /// Nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == RoutingDiff::default()
    }

    /// Whether any route moved (domains, users, default or default_domain).
    pub fn routes_moved(&self) -> bool {
        !self.domains.is_empty()
            || !self.users.is_empty()
            || self.default.is_some()
            || self.default_domain.is_some()
    }

    /// One line for logs: counts only.
    pub fn summary(&self) -> String {
        format!(
            "{} domains and {} users move, default {}, backends +{} -{} ~{}",
            self.domains.len(),
            self.users.len(),
            if self.default.is_some() {
                "changed"
            } else {
                "unchanged"
            },
            self.backends_added.len(),
            self.backends_removed.len(),
            self.backends_changed.len()
        )
    }
}

fn name(b: Option<&str>) -> &str {
    b.unwrap_or("(no route)")
}

impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {}",
            self.key,
            name(self.old.as_deref()),
            name(self.new.as_deref())
        )
    }
}

impl fmt::Display for RoutingDiff {
    /// The full report, one change per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no changes");
        }
        for m in &self.domains {
            writeln!(f, "domain {m}")?;
        }
        for m in &self.users {
            writeln!(f, "user {m}")?;
        }
        if let Some((o, n)) = &self.default {
            writeln!(
                f,
                "default: {} -> {}",
                name(o.as_deref()),
                name(n.as_deref())
            )?;
        }
        if let Some((o, n)) = &self.default_domain {
            writeln!(
                f,
                "default_domain: {} -> {}",
                name(o.as_deref()),
                name(n.as_deref())
            )?;
        }
        if let Some((o, n)) = &self.master_user_separator {
            let sep =
                |c: &Option<char>| c.map_or_else(|| "(off)".to_string(), |c| format!("{c:?}"));
            writeln!(f, "master_user_separator: {} -> {}", sep(o), sep(n))?;
        }
        for b in &self.backends_added {
            writeln!(f, "backend added: {b}")?;
        }
        for b in &self.backends_removed {
            writeln!(f, "backend removed: {b}")?;
        }
        for b in &self.backends_changed {
            writeln!(f, "backend changed: {} ({})", b.name, b.fields.join(", "))?;
        }
        Ok(())
    }
}

fn changed_fields(a: &Backend, b: &Backend) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut cmp = |n: &'static str, same: bool| {
        if !same {
            out.push(n);
        }
    };
    cmp("host", a.host == b.host);
    cmp("imap_port", a.imap_port == b.imap_port);
    cmp("pop3_port", a.pop3_port == b.pop3_port);
    cmp("tls", a.tls == b.tls);
    cmp("tls_ca_file", a.tls_ca_file == b.tls_ca_file);
    cmp("tls_verify", a.tls_verify == b.tls_verify);
    cmp("tls_server_name", a.tls_server_name == b.tls_server_name);
    cmp("max_sessions", a.max_sessions == b.max_sessions);
    cmp(
        "max_logins_in_flight",
        a.max_logins_in_flight == b.max_logins_in_flight,
    );
    cmp("forward_client", a.forward_client == b.forward_client);
    cmp("probe", a.probe == b.probe);
    cmp(
        "unavailable_message",
        a.unavailable_message == b.unavailable_message,
    );
    cmp("fallback", a.fallback == b.fallback);
    cmp("public_name", a.public_name == b.public_name);
    cmp("drain", a.drain == b.drain);
    out
}

impl RoutingTable {
    fn domain_target(&self, domain: &str) -> Option<&str> {
        self.domain_index(domain).map(|(i, _)| self.name_of(i))
    }

    fn user_target(&self, addr: &str) -> Option<&str> {
        let (local, domain) = addr.split_once('@')?;
        let login = Login {
            local: Cow::Borrowed(local),
            domain: Some(Cow::Borrowed(domain)),
        };
        self.login_index(&login).map(|(i, _)| self.name_of(i))
    }

    /// Whether `user` would be served by a different backend (by name) in `newer`.
    pub fn route_changed(&self, newer: &RoutingTable, user: &str) -> bool {
        let old = self.lookup_index(user).map(|(i, _)| self.name_of(i));
        let new = newer.lookup_index(user).map(|(i, _)| newer.name_of(i));
        old != new
    }

    /// The changes from `self` to `newer`. Keys are compared by their effective route, so
    /// removing `example.com` while the default still points at the same backend is no move.
    pub fn diff(&self, newer: &RoutingTable) -> RoutingDiff {
        let mut d = RoutingDiff::default();
        let push = |list: &mut Vec<Move>, key: &str, o: Option<&str>, n: Option<&str>| {
            if o != n {
                list.push(Move {
                    key: key.to_string(),
                    old: o.map(str::to_string),
                    new: n.map(str::to_string),
                });
            }
        };
        // The million-domain case: both tables keep their domains in file order, and an
        // edit leaves almost all of them in place, so the old keys are walked side by side
        // with the new ones (no hashing while they line up). Where they do not, one probe
        // finds the key in `newer` and the walk goes on after it; the new keys passed over
        // are the only ones that can be missing from the old table.
        let mut cursor = 0u32;
        let mut passed: Vec<(u32, u32)> = Vec::new();
        for old in self.domains.records(0) {
            let k = old.key_str();
            let in_step = newer
                .domains
                .record(cursor)
                .filter(|(n, _)| n.key == old.key);
            let found = in_step.or_else(|| {
                let off = newer.domains.offset_of(old.key)?;
                let (n, next) = newer.domains.record(off)?;
                if off > cursor {
                    passed.push((cursor, off));
                    Some((n, next))
                } else {
                    // Behind the walk: passed over already (and looked at there).
                    Some((n, cursor))
                }
            });
            let new = match found {
                Some((n, next)) => {
                    cursor = next;
                    Some(newer.name_of(n.backend))
                }
                None => newer.wildcard_or_default(k).map(|(i, _)| newer.name_of(i)),
            };
            push(&mut d.domains, k, Some(self.name_of(old.backend)), new);
        }
        passed.push((cursor, u32::MAX));
        for (from, to) in passed {
            for n in newer.domains.records(from).take_while(|n| n.off < to) {
                let k = n.key_str();
                if !self.domains.contains_key(k) {
                    push(
                        &mut d.domains,
                        k,
                        self.domain_target(k),
                        newer.domain_target(k),
                    );
                }
            }
        }
        let wild = |t: &RoutingTable| {
            t.wildcards
                .values()
                .map(|(_, r)| r.clone())
                .collect::<Vec<_>>()
        };
        let mut rules = wild(self);
        rules.extend(wild(newer));
        rules.sort();
        rules.dedup();
        for r in rules {
            push(
                &mut d.domains,
                &r,
                self.domain_target(&r),
                newer.domain_target(&r),
            );
        }
        for k in self.users.keys() {
            push(&mut d.users, k, self.user_target(k), newer.user_target(k));
        }
        for k in newer.users.keys().filter(|k| !self.users.contains_key(k)) {
            push(&mut d.users, k, self.user_target(k), newer.user_target(k));
        }
        d.domains.sort_by(|a, b| a.key.cmp(&b.key));
        d.users.sort_by(|a, b| a.key.cmp(&b.key));
        let (od, nd) = (
            self.default_backend().map(|b| b.name.clone()),
            newer.default_backend().map(|b| b.name.clone()),
        );
        if od != nd {
            d.default = Some((od, nd));
        }
        if self.default_domain != newer.default_domain {
            d.default_domain = Some((self.default_domain.clone(), newer.default_domain.clone()));
        }
        if self.master_user_separator != newer.master_user_separator {
            d.master_user_separator =
                Some((self.master_user_separator, newer.master_user_separator));
        }
        for b in newer.backends() {
            match self.backend(&b.name) {
                None => d.backends_added.push(b.name.clone()),
                Some(old) => {
                    let fields = changed_fields(old, b);
                    if !fields.is_empty() {
                        d.backends_changed.push(BackendChange {
                            name: b.name.clone(),
                            fields,
                        });
                    }
                }
            }
        }
        for b in self.backends().filter(|b| newer.backend(&b.name).is_none()) {
            d.backends_removed.push(b.name.clone());
        }
        d
    }
}
