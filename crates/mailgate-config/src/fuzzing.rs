//! Bodies of the `routing` and `routing_fast` fuzz targets (crates/mailgate/fuzz), shared
//! with the corpus replay test (`tests/fuzz_corpus.rs`) and, for the fast path, the
//! differential property test (`tests/fast_domains.rs`). Not an API: they panic when an
//! oracle fails.
//!
//! `routing_fast`'s oracle: wherever the `domains:` fast path takes a file, its result
//! (table, warnings or every error) equals the full parser's.
//!
//! Oracles: parsing any routing file and normalising any name never panics; domain,
//! wildcard and login normalisation are idempotent (a normalised name normalises to
//! itself); every key of a parsed table is in normal form and looks up to its own
//! backend (exact domains by the `domain` rule, users by `user override`, wildcards
//! for a name under them).

use std::borrow::Cow;
use std::path::Path;

use crate::lookup::RouteRule;
use crate::normalize::{normalize_domain, normalize_wildcard, parse_login};
use crate::table::RoutingTable;

/// Normalising a name twice gives what normalising it once gave.
fn check_normalisation(name: &str, default_domain: Option<&str>) {
    if let Some(d) = normalize_domain(name) {
        let again = normalize_domain(&d);
        assert_eq!(
            again.as_deref(),
            Some(&*d),
            "normalize_domain is not idempotent"
        );
        assert!(
            !d.bytes().any(|b| b.is_ascii_uppercase()) && !d.ends_with('.'),
            "a normalised domain is not lowercase without a trailing dot"
        );
    }
    if let Some(w) = normalize_wildcard(name) {
        assert_eq!(
            normalize_domain(&w).as_deref(),
            Some(w.as_str()),
            "a normalised wildcard suffix is not a normalised domain"
        );
        let key = format!("*.{w}");
        assert_eq!(
            normalize_wildcard(&key).as_deref(),
            Some(w.as_str()),
            "normalize_wildcard is not idempotent"
        );
    }
    if let Some(login) = parse_login(name, default_domain) {
        let address = login.address();
        let again = parse_login(&address, None).map(|l| l.address());
        assert_eq!(
            again.as_deref(),
            Some(address.as_str()),
            "parse_login is not idempotent"
        );
    }
}

/// Every key of `table` is normal and routes to its own backend.
fn check_table(table: &RoutingTable) {
    let name = |idx: u32| table.backends[idx as usize].name.clone();
    for (domain, entry) in table.domains.iter() {
        assert_eq!(
            normalize_domain(domain).as_deref(),
            Some(domain),
            "a domain key is not in normal form"
        );
        let route = table
            .lookup_domain(domain)
            .unwrap_or_else(|| panic!("a domain of the table does not route"));
        assert_eq!(
            route.rule,
            RouteRule::Domain,
            "a domain routes by another rule"
        );
        assert_eq!(
            route.backend.name,
            name(entry.backend),
            "a domain routes elsewhere"
        );
    }
    for (user, entry) in table.users.iter() {
        let route = table
            .lookup(user)
            .unwrap_or_else(|| panic!("a user override does not route"));
        assert_eq!(
            route.rule,
            RouteRule::UserOverride,
            "a user override routes by another rule"
        );
        assert_eq!(
            route.backend.name,
            name(entry.backend),
            "a user routes elsewhere"
        );
    }
    for (suffix, (entry, rule)) in &table.wildcards {
        assert_eq!(&**rule, format!("*.{suffix}"), "wildcard rule text");
        // A name right under the suffix that is no key of its own: this wildcard, or a
        // longer one that also covers it.
        let probe = format!("zz-fuzz-probe.{suffix}");
        if probe.len() > 253 || table.domains.contains_key(probe.as_str()) {
            continue;
        }
        let Some(route) = table.lookup_domain(&probe) else {
            panic!("a name under a wildcard does not route");
        };
        match route.rule {
            RouteRule::Wildcard(w) if *w == **rule => {
                assert_eq!(
                    route.backend.name,
                    name(entry.backend),
                    "a wildcard routes elsewhere"
                );
            }
            RouteRule::Wildcard(w) => assert!(
                w.len() > rule.len() && probe.ends_with(&w[1..]),
                "a shorter or unrelated wildcard won over {rule}"
            ),
            other => panic!("a name under a wildcard routed by {other}"),
        }
    }
}

/// A YAML double-quoted scalar holding `s` exactly.
fn yaml_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\U{:08x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A routing file built from fuzzed keys, one per input line: the first byte picks the
/// section (bit 0: domains / users, bit 1: the backend), the rest is the key.
fn structured(input: &[u8], with_default: bool) -> String {
    let mut domains = String::new();
    let mut users = String::new();
    for line in input.split(|b| *b == b'\n').take(64) {
        let Some((&kind, key)) = line.split_first() else {
            continue;
        };
        let key = String::from_utf8_lossy(key);
        let backend = if kind & 2 == 0 { "mail1" } else { "mail2" };
        let entry = format!("  {}: {backend}\n", yaml_quoted(&key));
        if kind & 1 == 0 {
            domains.push_str(&entry);
        } else {
            users.push_str(&entry);
        }
    }
    let mut text = String::from(
        "backends:\n  mail1:\n    host: 127.0.0.1\n    imap_port: 143\n  \
         mail2:\n    host: 127.0.0.2\n    pop3_port: 110\n",
    );
    if !domains.is_empty() {
        text.push_str("domains:\n");
        text.push_str(&domains);
    }
    if !users.is_empty() {
        text.push_str("users:\n");
        text.push_str(&users);
    }
    if with_default {
        text.push_str("default: mail2\n");
    }
    text
}

/// The `routing` fuzz target. Byte 0: bit 0 raw YAML (else a file built from fuzzed
/// keys), bit 1 a `default:` backend. The rest is normalised line by line too.
pub fn routing(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let text: Cow<'_, str> = if control & 1 != 0 {
        String::from_utf8_lossy(input)
    } else {
        Cow::Owned(structured(input, control & 2 != 0))
    };
    for line in input.split(|b| *b == b'\n').take(64) {
        let name = String::from_utf8_lossy(line.get(1..).unwrap_or_default());
        check_normalisation(&name, Some("example.com"));
        check_normalisation(&name, None);
    }
    let Ok(loaded) = RoutingTable::parse(&text, Path::new("/nonexistent/routing.yaml")) else {
        return;
    };
    check_table(&loaded.table);
}

/// Parse `text` through the `domains:` fast path and through the full parser alone; panic
/// if the fast path took the file and the two differ (table, warnings or errors). Returns
/// whether the fast path took it. Used by the differential property test and the
/// `routing_fast` fuzz target.
pub fn fast_path_agrees(text: &str) -> bool {
    let path = Path::new("/nonexistent/routing.yaml");
    let Some(fast) = crate::load::parse_fast(text, path) else {
        return false;
    };
    let full = crate::load::parse_full(text, path);
    match (fast, full) {
        (Ok(a), Ok(b)) => {
            assert_same_table(&a.table, &b.table);
            assert_eq!(a.warnings, b.warnings, "fast path: other warnings");
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "fast path: other errors"),
        (Ok(_), Err(e)) => panic!("fast path accepted a file the full parser refuses: {e}"),
        (Err(e), Ok(_)) => panic!("fast path refused a file the full parser accepts: {e}"),
    }
    true
}

fn assert_same_table(a: &RoutingTable, b: &RoutingTable) {
    assert_eq!(a.backends, b.backends, "fast path: other backends");
    assert_eq!(a.by_name, b.by_name, "fast path: other backend names");
    assert_eq!(a.domains, b.domains, "fast path: other domains");
    assert_eq!(a.wildcards, b.wildcards, "fast path: other wildcards");
    assert_eq!(a.users, b.users, "fast path: other users");
    assert_eq!(
        a.user_only_domains, b.user_only_domains,
        "fast path: other user domains"
    );
    assert_eq!(a.default, b.default, "fast path: other default");
    assert_eq!(
        a.default_domain, b.default_domain,
        "fast path: other default_domain"
    );
    assert_eq!(
        a.master_user_separator, b.master_user_separator,
        "fast path: other master_user_separator"
    );
    assert_eq!(a.version, b.version, "fast path: other version");
    assert_eq!(a.source, b.source, "fast path: other source");
}

/// The `routing_fast` fuzz target: byte 0 bit 0 puts a fixed `backends:` section in front
/// of the input (else the input is the whole file), bit 1 a `domains:` header right before
/// the input, so that mutations land in the block the fast path reads.
pub fn routing_fast(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let mut text = String::new();
    if control & 1 != 0 {
        text.push_str(
            "backends:\n  mail1:\n    host: 127.0.0.1\n    imap_port: 143\n  \
             mail2: {host: 127.0.0.2, pop3_port: 110}\n",
        );
    }
    if control & 2 != 0 {
        text.push_str("domains:\n");
    }
    text.push_str(&String::from_utf8_lossy(input));
    fast_path_agrees(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_files_parse_and_route() {
        let text = structured(
            "\u{0}Example.COM\n\u{2}*.example.net\n\u{1}Alice@example.com\n\u{0}bücher.example"
                .as_bytes(),
            true,
        );
        let loaded = RoutingTable::parse(&text, Path::new("/x/routing.yaml")).expect("parses");
        assert_eq!(loaded.table.domains.len(), 2);
        assert_eq!(loaded.table.wildcards.len(), 1);
        assert_eq!(loaded.table.users.len(), 1);
        check_table(&loaded.table);
    }

    #[test]
    fn quoting_keeps_every_character() {
        let key = "a\"b\\c\u{1}\u{85}d";
        let text = format!("k: {}\n", yaml_quoted(key));
        let v: std::collections::HashMap<String, String> =
            serde_saphyr::from_str(&text).expect("yaml");
        assert_eq!(v["k"], key);
    }
}
