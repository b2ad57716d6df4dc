use std::time::{Duration, SystemTime};

use mailgate_proto::{Capabilities, Protocol};

use super::*;

fn imap(list: &str) -> Capabilities {
    Capabilities::from_imap(list.as_bytes())
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

const DOVECOT: &str =
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN";
const NO_IR: &str = "IMAP4rev1 LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN";
const CRAM: &str =
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5";

#[test]
fn unprobed_backends_restrict_nothing() {
    let book = CapabilityBook::default();
    let adv = book.advertised(Protocol::Imap, ["a", "b"]);
    assert_eq!(adv, Advertised::default());
    book.record("a", Protocol::Imap, imap(NO_IR), None, t(1));
    let adv = book.advertised(Protocol::Imap, ["a", "b"]);
    assert!(!adv.sasl_ir && adv.id);
    // Another protocol's lists do not count.
    assert_eq!(
        book.advertised(Protocol::Pop3, ["a"]),
        Advertised::default()
    );
    // Only the backends a login can reach count.
    assert_eq!(
        book.advertised(Protocol::Imap, ["b"]),
        Advertised::default()
    );
}

#[test]
fn intersection_over_reachable_backends() {
    let book = CapabilityBook::default();
    book.record("a", Protocol::Imap, imap(DOVECOT), None, t(1));
    book.record("b", Protocol::Imap, imap(CRAM), None, t(1));
    let adv = book.advertised(Protocol::Imap, ["a", "b"]);
    assert!(adv.sasl_ir && adv.id);
    // mailgate never offers CRAM-MD5; XOAUTH2 only where every backend lists it.
    assert_eq!(adv.mechanism_names(true), ["PLAIN", "LOGIN"]);
    book.record("c", Protocol::Imap, imap(NO_IR), None, t(1));
    let adv = book.advertised(Protocol::Imap, ["a", "b", "c"]);
    assert!(!adv.sasl_ir);
}

#[test]
fn drift_names_who_has_what() {
    let book = CapabilityBook::default();
    book.record(
        "a",
        Protocol::Imap,
        imap(DOVECOT),
        Some(imap("IMAP4rev1 IDLE MOVE")),
        t(1),
    );
    book.record(
        "b",
        Protocol::Imap,
        imap(NO_IR),
        Some(imap("IMAP4rev1 IDLE")),
        t(1),
    );
    book.record("c", Protocol::Imap, imap(CRAM), None, t(1));
    let d = book.drift(Protocol::Imap, ["a", "b", "c", "d"]);
    assert_eq!(d.probed, ["a", "b", "c"]);
    assert_eq!(d.unprobed, ["d"]);
    let got: Vec<(Stage, &str, Vec<&str>, Vec<&str>)> = d
        .differences
        .iter()
        .map(|x| {
            (
                x.stage,
                x.capability.as_str(),
                x.with.iter().map(String::as_str).collect(),
                x.without.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Stage::PreLogin, "SASL-IR", vec!["a", "c"], vec!["b"]),
            (Stage::Sasl, "CRAM-MD5", vec!["c"], vec!["a", "b"]),
            // c has no post-login list: it is not compared there.
            (Stage::PostLogin, "MOVE", vec!["a"], vec!["b"]),
        ]
    );
    // Identical backends: no drift.
    let same = CapabilityBook::default();
    same.record("a", Protocol::Imap, imap(DOVECOT), None, t(1));
    same.record("b", Protocol::Imap, imap(DOVECOT), None, t(1));
    assert!(
        same.drift(Protocol::Imap, ["a", "b"])
            .differences
            .is_empty()
    );
}

#[test]
fn changes_between_probes() {
    let book = CapabilityBook::default();
    let first = book.record("a", Protocol::Imap, imap(DOVECOT), None, t(1));
    assert_eq!(first, CapabilityChange::First);
    let same = book.record(
        "a",
        Protocol::Imap,
        imap(DOVECOT),
        Some(imap("IMAP4rev1 IDLE")),
        t(2),
    );
    assert_eq!(same, CapabilityChange::Same);
    // The upgrade: SASL-IR gone, CRAM-MD5 and a post-login capability new.
    let upgrade = book.record(
        "a",
        Protocol::Imap,
        imap(&CRAM.replace("SASL-IR ", "")),
        None,
        t(3),
    );
    assert_eq!(
        upgrade,
        CapabilityChange::Changed {
            added: vec!["SASL CRAM-MD5".into()],
            removed: vec!["SASL-IR".into()],
        }
    );
    assert_eq!(
        upgrade.to_string(),
        "added: SASL CRAM-MD5; removed: SASL-IR"
    );
    // A probe without a login keeps the post-login list.
    let r = book.get("a", Protocol::Imap).expect("recorded");
    assert!(r.post_login.is_some() && r.changes == 1 && r.at == t(3));
    let post = book.record(
        "a",
        Protocol::Imap,
        r.pre_login.clone(),
        Some(imap("IMAP4rev1")),
        t(4),
    );
    assert_eq!(
        post,
        CapabilityChange::Changed {
            added: vec![],
            removed: vec!["post-login IDLE".into()],
        }
    );
    book.retain(|n| n != "a");
    assert_eq!(book.get("a", Protocol::Imap), None);
}

#[test]
fn pop3_drift_covers_sasl_lines() {
    let book = CapabilityBook::default();
    let capa = |lines: &[&str]| Capabilities::from_pop3(lines.iter().map(|l| l.as_bytes()));
    book.record(
        "a",
        Protocol::Pop3,
        capa(&["USER", "SASL PLAIN LOGIN", "TOP"]),
        None,
        t(1),
    );
    book.record(
        "b",
        Protocol::Pop3,
        capa(&["USER", "SASL PLAIN LOGIN CRAM-MD5", "TOP"]),
        None,
        t(1),
    );
    let d = book.drift(Protocol::Pop3, ["a", "b"]);
    assert_eq!(d.differences.len(), 1);
    assert_eq!(d.differences[0].stage, Stage::Sasl);
    assert_eq!(d.differences[0].capability, "CRAM-MD5");
    let adv = book.advertised(Protocol::Pop3, ["a", "b"]);
    assert_eq!(adv.mechanism_names(true), ["PLAIN", "LOGIN"]);
}

#[test]
fn long_changes_are_shortened_for_the_log() {
    let many: Vec<String> = (0..20).map(|i| format!("C{i:02}")).collect();
    let change = CapabilityChange::Changed {
        added: many.clone(),
        removed: vec![],
    };
    let text = change.to_string();
    assert!(text.starts_with("added: C00, C01,"), "{text}");
    assert!(text.contains("C11 … 8 more; removed: -"), "{text}");
    assert!(!text.contains("C12"), "{text}");
}
