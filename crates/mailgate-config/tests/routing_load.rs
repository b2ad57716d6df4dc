//! What the fast routing-file load keeps: shared backend names resolve, errors still carry
//! the written key and line, and YAML merge keys are refused (not silently expanded).
mod common;

use common::Dir;

const HEAD: &str = "backends:\n  mail1:\n    host: h1\n    imap_port: 143\n  mail2:\n    host: h2\n    imap_port: 143\n";

#[test]
fn many_domains_share_backend_names() {
    let mut text = format!("{HEAD}domains:\n");
    for i in 0..200 {
        text.push_str(&format!("  d{i}.test: mail{}\n", 1 + i % 2));
    }
    text.push_str("  Upper.TEST.: mail2\nusers:\n  a@d0.test: mail2\n");
    let t = Dir::new().load(&text).expect("valid").table;
    assert_eq!(t.counts().domains, 201);
    let name = |u: &str| t.lookup(u).map(|r| r.backend.name.clone());
    assert_eq!(name("x@d0.test").as_deref(), Some("mail1"));
    assert_eq!(name("x@d1.test").as_deref(), Some("mail2"));
    assert_eq!(name("x@upper.test").as_deref(), Some("mail2"));
    assert_eq!(name("a@d0.test").as_deref(), Some("mail2"));
}

#[test]
fn errors_keep_the_written_key_and_line() {
    let text = format!(
        "{HEAD}domains:\n  a.test: mail1\n  A.Test: mail2\n  b.test: nosuch\n  c.test: mail1\n  c.test: mail2\n"
    );
    let e = Dir::new().load(&text).expect_err("invalid");
    let got: Vec<(Option<usize>, &str)> = e.0.iter().map(|d| (d.line, d.key.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (Some(10), "domains.A.Test"),
            (Some(11), "domains.b.test"),
            (Some(13), "domains.c.test"),
        ],
        "{e}"
    );
    assert!(e.0[0].message.contains("duplicate of line 9"), "{e}");
    assert!(e.0[1].message.contains("unknown backend \"nosuch\""), "{e}");
}

#[test]
fn yaml_merge_keys_are_refused() {
    let text = "backends:\n  mail1: &b\n    host: h\n    imap_port: 143\n  mail2:\n    <<: *b\n    host: h2\ndomains:\n  a.test: mail1\n  b.test: mail2\n";
    let e = Dir::new().load(text).expect_err("merge key");
    assert!(e.0[0].message.to_lowercase().contains("merge"), "{e}");
}
