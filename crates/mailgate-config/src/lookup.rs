//! Lookups: user override → exact domain → longest wildcard suffix → default → none. The
//! result names the rule that matched, so `mailgate route` and logs can say why.

use std::fmt;
use std::sync::Arc;

use crate::normalize::{Login, parse_login, split_master};
use crate::table::{Backend, RoutingTable};

/// Which rule chose the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteRule {
    /// `users:` entry for the whole address.
    UserOverride,
    /// `domains:` exact entry.
    Domain,
    /// `domains:` wildcard entry; the value is the rule as normalised, e.g. `*.example.net`.
    Wildcard(Arc<str>),
    /// `default:`.
    Default,
}

impl fmt::Display for RouteRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteRule::UserOverride => f.write_str("user override"),
            RouteRule::Domain => f.write_str("domain"),
            RouteRule::Wildcard(w) => write!(f, "wildcard {w}"),
            RouteRule::Default => f.write_str("default"),
        }
    }
}

/// The answer to a lookup.
#[derive(Debug, Clone)]
pub struct Route {
    /// The backend that owns the mailbox.
    pub backend: Arc<Backend>,
    /// Why.
    pub rule: RouteRule,
}

/// How a login named the mailbox it routes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginForm {
    /// The login name is the mailbox user.
    Own,
    /// Dovecot's master-user form `user*master`: the part before `master_user_separator`.
    MasterUser,
    /// SASL PLAIN with an authorization identity: the authzid (the authcid, e.g. a master
    /// user, authenticates for it).
    Authzid,
}

impl LoginForm {
    /// A master or proxy identity logs in for someone else's mailbox.
    pub fn on_behalf(self) -> bool {
        self != LoginForm::Own
    }
}

/// A login name, normalised once, and where it goes.
#[derive(Debug, Clone)]
pub struct RoutedLogin {
    /// The normalised mailbox address (`local@domain`, with `default_domain` applied;
    /// lowercase, punycode; the mailbox user of a master-user or authzid login) — what kicks
    /// by user, per-user failure counts and the logs compare. The raw mailbox name,
    /// lowercased, when it does not parse.
    pub address: String,
    /// The normalised domain (kicks by domain), if the name has or defaults to one.
    pub domain: Option<String>,
    /// The route, `None` when no rule matches or the name is malformed.
    pub route: Option<Route>,
    /// Which form named the mailbox.
    pub form: LoginForm,
}

impl RoutingTable {
    /// Normalise a login name (IMAP LOGIN, POP3 USER, a SASL authentication identity) once
    /// and route it on its mailbox user: the part before the master-user separator when the
    /// name has one (`alice@example.com*admin` routes as `alice@example.com`).
    pub fn route_login(&self, user: &str) -> RoutedLogin {
        match split_master(user, self.master_user_separator) {
            (mailbox, Some(_)) => self.route_mailbox(mailbox, LoginForm::MasterUser),
            (mailbox, None) => self.route_mailbox(mailbox, LoginForm::Own),
        }
    }

    /// Route a login by its SASL identities: on the authorization identity when there is
    /// one (never split: Dovecot takes an authzid as it is), else as [`Self::route_login`].
    pub fn route_identity(&self, authzid: Option<&str>, authcid: &str) -> RoutedLogin {
        match authzid.filter(|z| !z.is_empty()) {
            Some(z) => self.route_mailbox(z, LoginForm::Authzid),
            None => self.route_login(authcid),
        }
    }

    fn route_mailbox(&self, user: &str, form: LoginForm) -> RoutedLogin {
        let Some(login) = parse_login(user, self.default_domain.as_deref()) else {
            return RoutedLogin {
                address: user.to_ascii_lowercase(),
                domain: None,
                route: None,
                form,
            };
        };
        let route = self.login_index(&login).and_then(|(idx, rule)| {
            let backend = self.backends.get(idx as usize)?.clone();
            Some(Route { backend, rule })
        });
        RoutedLogin {
            address: login.address(),
            domain: login.domain.as_deref().map(str::to_string),
            route,
            form,
        }
    }

    /// Route a login name exactly as given (no master-user split: see
    /// [`Self::route_login`]). `None` for malformed names (`u@`, `@d`, `u@a@b`, empty, over
    /// 254 bytes, control characters) and when no rule matches.
    pub fn lookup(&self, user: &str) -> Option<Route> {
        let (idx, rule) = self.lookup_index(user)?;
        let backend = self.backends.get(idx as usize)?.clone();
        Some(Route { backend, rule })
    }

    /// Route a normalised domain alone (no user override).
    pub fn lookup_domain(&self, domain: &str) -> Option<Route> {
        let d = crate::normalize::normalize_domain(domain)?;
        let (idx, rule) = self.domain_index(&d)?;
        let backend = self.backends.get(idx as usize)?.clone();
        Some(Route { backend, rule })
    }

    pub(crate) fn lookup_index(&self, user: &str) -> Option<(u32, RouteRule)> {
        let login = parse_login(user, self.default_domain.as_deref())?;
        self.login_index(&login)
    }

    pub(crate) fn login_index(&self, login: &Login<'_>) -> Option<(u32, RouteRule)> {
        let Some(domain) = login.domain.as_deref() else {
            return self.default.map(|d| (d, RouteRule::Default));
        };
        let exact = self.domains.get(domain);
        let overrides = match exact {
            Some(e) => e.has_users,
            None => !self.user_only_domains.is_empty() && self.user_only_domains.contains(domain),
        };
        if overrides {
            let mut addr = String::with_capacity(login.local.len() + 1 + domain.len());
            addr.push_str(&login.local);
            addr.push('@');
            addr.push_str(domain);
            if let Some(e) = self.users.get(addr.as_str()) {
                return Some((e.backend, RouteRule::UserOverride));
            }
        }
        if let Some(e) = exact {
            return Some((e.backend, RouteRule::Domain));
        }
        self.wildcard_or_default(domain)
    }

    /// Exact domain → longest wildcard → default, for a normalised domain.
    pub(crate) fn domain_index(&self, domain: &str) -> Option<(u32, RouteRule)> {
        if let Some(e) = self.domains.get(domain) {
            return Some((e.backend, RouteRule::Domain));
        }
        self.wildcard_or_default(domain)
    }

    pub(crate) fn wildcard_or_default(&self, domain: &str) -> Option<(u32, RouteRule)> {
        if !self.wildcards.is_empty() {
            // Suffixes from the longest to the shortest: the first hit is the longest match.
            for (i, b) in domain.bytes().enumerate() {
                if b == b'.'
                    && let Some((e, rule)) = self.wildcards.get(&domain[i + 1..])
                {
                    return Some((e.backend, RouteRule::Wildcard(rule.clone())));
                }
            }
        }
        self.default.map(|d| (d, RouteRule::Default))
    }
}
