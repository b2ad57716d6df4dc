//! `drain: true` / `drain_reason:` on a backend in the routing file.
mod common;

use common::Dir;
use mailgate_config::{ConfigErrors, FileDrain};

const HEAD: &str = "backends:\n  mail1:\n    host: h\n    imap_port: 143\n";
const TAIL: &str = "domains:\n  a.test: mail1\n";

fn with(lines: &str) -> String {
    format!("{HEAD}{lines}{TAIL}")
}

#[test]
fn drain_with_and_without_a_reason() {
    let d = Dir::new();
    let loaded = d
        .load(&with(
            "    drain: true\n    drain_reason: \"disk replacement, until 14:00 UTC\"\n",
        ))
        .expect("valid");
    let b = loaded.table.backend("mail1").expect("mail1");
    assert_eq!(
        b.drain,
        Some(FileDrain {
            reason: Some("disk replacement, until 14:00 UTC".into())
        })
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    let loaded = d.load(&with("    drain: true\n")).expect("valid");
    let b = loaded.table.backend("mail1").expect("mail1");
    assert_eq!(b.drain, Some(FileDrain { reason: None }));

    // Not drained: no key, or `drain: false`.
    let loaded = d.load(&with("")).expect("valid");
    assert_eq!(loaded.table.backend("mail1").expect("mail1").drain, None);
    let loaded = d.load(&with("    drain: false\n")).expect("valid");
    assert_eq!(loaded.table.backend("mail1").expect("mail1").drain, None);
}

#[test]
fn a_reason_without_drain_is_a_warning() {
    let d = Dir::new();
    let loaded = d
        .load(&with("    drain: false\n    drain_reason: done\n"))
        .expect("valid");
    assert_eq!(loaded.table.backend("mail1").expect("mail1").drain, None);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert_eq!(loaded.warnings[0].key, "backends.mail1.drain_reason");
    assert_eq!(loaded.warnings[0].line, Some(6));
    assert!(loaded.warnings[0].message.contains("without drain: true"));
}

fn errors(text: &str) -> ConfigErrors {
    match Dir::new().load(text) {
        Ok(_) => panic!("expected errors for {text:?}"),
        Err(e) => e,
    }
}

#[test]
fn bad_reasons_and_values_are_refused_with_line_and_key() {
    let e = errors(&with("    drain: true\n    drain_reason: \"\"\n"));
    assert_eq!(e.0[0].key, "backends.mail1.drain_reason");
    assert_eq!(e.0[0].line, Some(6));
    assert!(e.0[0].message.contains("empty"), "{e}");

    let long = "x".repeat(201);
    let e = errors(&with(&format!(
        "    drain: true\n    drain_reason: {long}\n"
    )));
    assert!(e.0[0].message.contains("longer than 200"), "{e}");
    let ok = "x".repeat(200);
    Dir::new()
        .load(&with(&format!("    drain: true\n    drain_reason: {ok}\n")))
        .expect("200 characters are fine");

    let e = errors(&with("    drain: true\n    drain_reason: \"a\\nb\"\n"));
    assert!(e.0[0].message.contains("one line"), "{e}");

    // A wrong type stops the parse with the key path.
    let e = errors(&with("    drain: maybe\n"));
    assert!(e.to_string().contains("drain"), "{e}");
    // A typo is an unknown key, not a silent no-op.
    let e = errors(&with("    drained: true\n"));
    assert!(e.to_string().contains("drained"), "{e}");
}

#[test]
fn a_changed_drain_is_a_changed_backend_in_the_diff() {
    let d = Dir::new();
    let before = d.load(&with("")).expect("valid").table;
    let after = d
        .load(&with("    drain: true\n    drain_reason: x\n"))
        .expect("valid")
        .table;
    let diff = before.diff(&after);
    let changed: Vec<_> = diff
        .backends_changed
        .iter()
        .map(|c| (c.name.as_str(), c.fields.clone()))
        .collect();
    assert_eq!(changed, [("mail1", vec!["drain"])]);
    assert!(
        !diff.backends_changed[0].address_changed(),
        "a drain moves no session"
    );
    assert!(!diff.routes_moved());
}
