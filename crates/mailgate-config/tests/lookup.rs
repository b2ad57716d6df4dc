//! Lookup known-answer tables: every rule, normalisation, every malformed address.
mod common;

use common::{BASIC, Dir};
use mailgate_config::RouteRule;

fn route(t: &mailgate_config::RoutingTable, user: &str) -> Option<(String, String)> {
    t.lookup(user)
        .map(|r| (r.backend.name.clone(), r.rule.to_string()))
}

#[test]
fn lookup_table() {
    let d = Dir::new();
    let t = d.load(BASIC).expect("valid").table;
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        ("alice@example.com", Some(("mail2", "user override"))),
        ("ALICE@EXAMPLE.COM.", Some(("mail2", "user override"))),
        ("alice", Some(("mail2", "user override"))),
        ("bob@example.com", Some(("mail3", "user override"))),
        ("carol@example.com", Some(("mail1", "domain"))),
        ("carol", Some(("mail1", "domain"))),
        ("x@example.org", Some(("mail2", "domain"))),
        ("x@EXAMPLE.org.", Some(("mail2", "domain"))),
        ("x@a.example.net", Some(("mail3", "wildcard *.example.net"))),
        (
            "x@a.b.example.net",
            Some(("mail3", "wildcard *.example.net")),
        ),
        ("x@sub.example.net", Some(("mail1", "domain"))),
        (
            "x@a.deep.example.net",
            Some(("mail4", "wildcard *.deep.example.net")),
        ),
        (
            "x@deep.example.net",
            Some(("mail3", "wildcard *.example.net")),
        ),
        ("x@example.net", Some(("mail4", "default"))),
        ("z@w.example.net", Some(("mail1", "user override"))),
        ("y@w.example.net", Some(("mail3", "wildcard *.example.net"))),
        ("x@bücher.example", Some(("mail2", "domain"))),
        ("x@BÜCHER.example", Some(("mail2", "domain"))),
        ("x@xn--bcher-kva.example", Some(("mail2", "domain"))),
        ("x@unknown.test", Some(("mail4", "default"))),
        ("u@", None),
        ("@example.com", None),
        ("u@a@example.com", None),
        ("", None),
        ("u@exa mple.com", None),
        ("u\r\n@example.com", None),
        ("u@example..com", None),
        ("u@.", None),
    ];
    for (user, want) in cases {
        let got = route(&t, user);
        let want = want.map(|(b, r)| (b.to_string(), r.to_string()));
        assert_eq!(got, want, "{user:?}");
    }
    let long = format!("{}@example.com", "a".repeat(243));
    assert_eq!(long.len(), 255);
    assert!(t.lookup(&long).is_none());
    assert!(t.lookup(&long[1..]).is_some());
}

#[test]
fn without_default_unknown_has_no_route() {
    let d = Dir::new();
    let text = "backends:\n  m:\n    host: h\n    imap_port: 1\ndomains:\n  a.test: m\n";
    let t = d.load(text).expect("valid").table;
    assert!(t.lookup("x@b.test").is_none());
    assert!(t.lookup("bare").is_none());
    let r = t.lookup("x@A.TEST").expect("route");
    assert_eq!(r.rule, RouteRule::Domain);
}

#[test]
fn bare_login_without_default_domain_uses_default() {
    let d = Dir::new();
    let text = "backends:\n  m:\n    host: h\n    imap_port: 1\ndefault: m\n";
    let t = d.load(text).expect("valid").table;
    assert_eq!(t.lookup("bare").map(|r| r.rule), Some(RouteRule::Default));
}

#[test]
fn backend_fields_and_secret_redacted() {
    let d = Dir::new();
    let t = d.load(BASIC).expect("valid").table;
    let b = t.backend("mail1").expect("mail1");
    assert_eq!((b.imap_port, b.pop3_port), (Some(10143), Some(10110)));
    assert!(b.tls_verify);
    let p = b.probe.as_ref().expect("probe");
    assert_eq!(p.password.expose(), b"s3cret");
    let dbg = format!("{t:?}");
    assert!(!dbg.contains("s3cret"), "{dbg}");
    assert_eq!(t.backends().count(), 4);
    assert_eq!(t.counts().domains, 4);
    assert_eq!(t.counts().wildcards, 2);
    assert_eq!(t.default_domain(), Some("example.com"));
}
