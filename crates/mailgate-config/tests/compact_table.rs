//! The compact routing table (keys in one arena, 12-byte entries: `src/keymap.rs`) answers
//! exactly as a straightforward model over `HashMap`s does, for random tables and random
//! logins: user override → exact domain → longest wildcard → default → none. The names come
//! from a small alphabet so that keys collide, nest and share suffixes; every table is
//! written both through the `domains:` fast path (one pair per line) and through the full
//! parser (flow style), and both must answer as the model.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mailgate_config::{RouteRule, RoutingTable};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Model {
    domains: BTreeMap<String, usize>,
    wildcards: BTreeMap<String, usize>,
    users: BTreeMap<String, usize>,
    default: Option<usize>,
}

const BACKENDS: usize = 3;

impl Model {
    /// What the model routes `local@domain` to: backend index and rule kind.
    fn route(&self, local: &str, domain: &str) -> Option<(usize, &'static str)> {
        let domains: HashMap<&str, usize> =
            self.domains.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let users: HashMap<String, usize> = self.users.clone().into_iter().collect();
        if let Some(b) = users.get(&format!("{local}@{domain}")) {
            return Some((*b, "user"));
        }
        if let Some(b) = domains.get(domain) {
            return Some((*b, "domain"));
        }
        let mut best: Option<(&str, usize)> = None;
        for (suffix, b) in &self.wildcards {
            if domain.ends_with(&format!(".{suffix}"))
                && best.is_none_or(|(s, _)| suffix.len() > s.len())
            {
                best = Some((suffix, *b));
            }
        }
        if let Some((_, b)) = best {
            return Some((b, "wildcard"));
        }
        self.default.map(|b| (b, "default"))
    }

    fn file(&self, fast: bool) -> String {
        self.file_in_order(fast, self.domains.keys().cloned().collect())
    }

    /// The file with the exact domains in `order` (every key of `domains` once).
    fn file_in_order(&self, fast: bool, order: Vec<String>) -> String {
        let mut s = String::from("backends:\n");
        for b in 0..BACKENDS {
            s.push_str(&format!(
                "  m{b}:\n    host: 127.0.0.{}\n    imap_port: 143\n",
                b + 1
            ));
        }
        let mut pairs: Vec<(String, usize)> = order
            .into_iter()
            .filter_map(|k| self.domains.get(&k).map(|v| (k, *v)))
            .collect();
        pairs.extend(
            self.wildcards
                .iter()
                .map(|(k, v)| (format!("\"*.{k}\""), *v)),
        );
        if pairs.is_empty() {
            s.push_str("domains: {}\n");
        } else if fast {
            s.push_str("domains:\n");
            for (k, v) in &pairs {
                s.push_str(&format!("  {k}: m{v}\n"));
            }
        } else {
            let flow: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}: m{v}")).collect();
            s.push_str(&format!("domains: {{{}}}\n", flow.join(", ")));
        }
        s.push_str(if self.users.is_empty() {
            "users: {}\n"
        } else {
            "users:\n"
        });
        for (k, v) in &self.users {
            s.push_str(&format!("  {k}: m{v}\n"));
        }
        if let Some(d) = self.default {
            s.push_str(&format!("default: m{d}\n"));
        }
        s
    }
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec("[ab]{1,2}", 1..4).prop_map(|l| l.join("."))
}

fn model() -> impl Strategy<Value = Model> {
    (
        prop::collection::btree_map(name(), 0..BACKENDS, 0..40),
        prop::collection::btree_map(name(), 0..BACKENDS, 0..6),
        prop::collection::btree_map(("[ab]", name()), 0..BACKENDS, 0..6),
        prop::option::of(0..BACKENDS),
    )
        .prop_map(|(domains, wildcards, users, default)| Model {
            domains,
            wildcards,
            users: users
                .into_iter()
                .map(|((l, d), b)| (format!("{l}@{d}"), b))
                .collect(),
            default,
        })
}

fn rule_kind(rule: &RouteRule) -> &'static str {
    match rule {
        RouteRule::UserOverride => "user",
        RouteRule::Domain => "domain",
        RouteRule::Wildcard(_) => "wildcard",
        RouteRule::Default => "default",
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn compact_table_answers_as_the_hashmap_model(
        m in model(),
        queries in prop::collection::vec(("[ab]", name()), 1..40),
    ) {
        for fast in [true, false] {
            let text = m.file(fast);
            let loaded = RoutingTable::parse(&text, Path::new("/nonexistent/routing.yaml"))
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            let t = loaded.table;
            let c = t.counts();
            prop_assert_eq!(c.domains, m.domains.len());
            prop_assert_eq!(c.wildcards, m.wildcards.len());
            prop_assert_eq!(c.users, m.users.len());
            // Every key of the model, and random names (misses, subdomains, users).
            let mut all: Vec<(String, String)> = queries.clone();
            all.extend(m.domains.keys().map(|d| ("a".to_string(), d.clone())));
            all.extend(m.users.keys().filter_map(|u| {
                u.split_once('@').map(|(l, d)| (l.to_string(), d.to_string()))
            }));
            for (local, domain) in &all {
                let got = t
                    .lookup(&format!("{local}@{domain}"))
                    .map(|r| (r.backend.name.clone(), rule_kind(&r.rule)));
                let want = m.route(local, domain).map(|(b, k)| (format!("m{b}"), k));
                prop_assert_eq!(&got, &want, "{}@{} (fast: {})\n{}", local, domain, fast, text);
                let got_domain = t
                    .lookup_domain(domain)
                    .map(|r| (r.backend.name.clone(), rule_kind(&r.rule)));
                let want_domain = m
                    .route("\u{0}", domain)
                    .map(|(b, k)| (format!("m{b}"), k));
                prop_assert_eq!(got_domain, want_domain, "domain {}", domain);
            }
        }
    }

    /// The diff between two compact tables names exactly the keys whose model route moves,
    /// for unrelated tables and for edits of one (values changed, keys added and removed,
    /// lines moved: the diff walks both in file order and must resynchronise).
    #[test]
    fn diff_of_compact_tables_matches_the_model(
        a in model(),
        other in model(),
        edits in prop::collection::vec((name(), prop::option::of(0..BACKENDS)), 0..12),
        order_seed in prop::collection::vec(any::<u32>(), 0..60),
        related in any::<bool>(),
    ) {
        let mut b = if related { a.clone() } else { other };
        for (k, v) in edits {
            match v {
                Some(v) => b.domains.insert(k, v),
                None => b.domains.remove(&k),
            };
        }
        // Mostly file order, with some lines moved elsewhere.
        let mut order: Vec<String> = b.domains.keys().cloned().collect();
        for (i, r) in order_seed.iter().enumerate() {
            if !order.is_empty() && i % 3 == 0 {
                let (x, y) = (*r as usize % order.len(), (*r as usize / 7) % order.len());
                order.swap(x, y);
            }
        }
        let parse = |text: String| {
            RoutingTable::parse(&text, Path::new("/nonexistent/routing.yaml"))
                .unwrap_or_else(|e| panic!("{e}"))
                .table
        };
        let (ta, tb) = (parse(a.file(true)), parse(b.file_in_order(true, order)));
        let d = ta.diff(&tb);
        let mut keys: Vec<&String> = a.domains.keys().chain(b.domains.keys()).collect();
        keys.sort();
        keys.dedup();
        let target = |m: &Model, dom: &str| m.route("\u{0}", dom).map(|(i, _)| format!("m{i}"));
        let mut want = Vec::new();
        for k in keys {
            let (o, n) = (target(&a, k), target(&b, k));
            if o != n {
                want.push((k.clone(), o, n));
            }
        }
        let got: Vec<(String, Option<String>, Option<String>)> = d
            .domains
            .iter()
            .filter(|mv| !mv.key.starts_with("*."))
            .map(|mv| (mv.key.clone(), mv.old.clone(), mv.new.clone()))
            .collect();
        prop_assert_eq!(got, want);
    }
}
