use std::time::SystemTime;

use mailgate_config::RoutingTable;
use mailgate_health::CapabilityBook;
use mailgate_proto::{Capabilities, Protocol};
use prometheus_client::registry::Registry;
use serde_json::json;

use super::*;

fn table() -> RoutingTable {
    let text = "backends:\n  a:\n    host: 127.0.0.1\n    imap_port: 1143\n    pop3_port: 1110\n  \
                b:\n    host: 127.0.0.1\n    imap_port: 2143\n  \
                c:\n    host: 127.0.0.1\n    pop3_port: 3110\ndomains:\n  a.test: a\n  b.test: b\n  c.test: c\n";
    RoutingTable::parse(text, std::path::Path::new("routing.yaml"))
        .expect("valid")
        .table
}

fn imap(list: &str) -> Option<Capabilities> {
    Some(Capabilities::from_imap(list.as_bytes()))
}

#[test]
fn reachable_backends_are_those_with_the_protocols_port() {
    let t = table();
    assert_eq!(
        reachable(&t, Protocol::Imap).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(
        reachable(&t, Protocol::Pop3).collect::<Vec<_>>(),
        ["a", "c"]
    );
}

fn seen(pre: &str, post: Option<&str>) -> Seen {
    Seen {
        pre_login: imap(pre),
        post_login: post.and_then(imap),
    }
}

#[test]
fn observe_feeds_the_book_the_metrics_and_status() {
    let t = table();
    let book = CapabilityBook::default();
    let metrics = CapabilityMetrics::default();
    let a = "IMAP4rev1 SASL-IR ID AUTH=PLAIN AUTH=LOGIN";
    let b = "IMAP4rev1 ID AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5";
    observe(
        &book,
        &metrics,
        &t,
        "a",
        Protocol::Imap,
        seen(a, Some("IMAP4rev1 IDLE")),
    );
    observe(&book, &metrics, &t, "b", Protocol::Imap, seen(b, None));
    // A backend no longer in the table is forgotten at the next probe.
    book.record(
        "gone",
        Protocol::Imap,
        Capabilities::default(),
        None,
        SystemTime::now(),
    );
    observe(&book, &metrics, &t, "b", Protocol::Imap, seen(b, None));
    assert_eq!(book.get("gone", Protocol::Imap), None);
    let adv = advertised(&book, &t, Protocol::Imap);
    assert!(!adv.sasl_ir && adv.id);

    let mut r = Registry::default();
    metrics.register(&mut r);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &r).expect("encode");
    let line = |l: &str| text.lines().any(|x| x == l);
    assert!(
        line(
            r#"backend_capability{backend="a",protocol="imap",stage="pre_login",capability="SASL-IR"} 1"#
        ),
        "{text}"
    );
    assert!(line(
        r#"backend_capability{backend="b",protocol="imap",stage="sasl",capability="CRAM-MD5"} 1"#
    ));
    assert!(line(
        r#"backend_capability{backend="a",protocol="imap",stage="post_login",capability="IDLE"} 1"#
    ));
    assert!(!text.contains("AUTH="), "mechanisms are stage sasl: {text}");
    // SASL-IR and CRAM-MD5 differ.
    assert!(line(r#"capability_drift{protocol="imap"} 2"#), "{text}");
    assert!(line(r#"capability_drift{protocol="pop3"} 0"#));
    // b upgraded: SASL-IR now, CRAM-MD5 gone; no drift left, no stale series.
    observe(&book, &metrics, &t, "b", Protocol::Imap, seen(a, None));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &r).expect("encode");
    assert!(!text.contains("CRAM-MD5"), "{text}");
    assert!(
        text.lines()
            .any(|x| x == r#"capability_drift{protocol="imap"} 0"#)
    );

    observe(&book, &metrics, &t, "b", Protocol::Imap, seen(b, None));
    let mut doc = json!({ "backends": [ { "name": "a" }, { "name": "b" }, { "name": "c" } ] });
    extend_status(&mut doc, &book, &t, false);
    assert_eq!(
        doc["backends"][0]["capabilities"]["imap"]["pre_login"],
        json!(["ID", "IMAP4REV1", "SASL-IR"])
    );
    assert_eq!(
        doc["backends"][0]["capabilities"]["imap"]["post_login"],
        json!(["IDLE", "IMAP4REV1"])
    );
    assert_eq!(
        doc["backends"][1]["capabilities"]["imap"]["sasl"],
        json!(["CRAM-MD5", "LOGIN", "PLAIN"])
    );
    assert_eq!(doc["backends"][1]["capabilities"]["imap"]["changes"], 2);
    assert_eq!(doc["backends"][2]["capabilities"], json!({}));
    let d = &doc["capability_drift"]["imap"];
    assert_eq!(d["drift"], true);
    assert_eq!(
        d["advertised"],
        json!({"sasl_ir": false, "id": true, "mechanisms": ["PLAIN", "LOGIN"]})
    );
    assert_eq!(
        d["differences"][0],
        json!({"stage": "pre_login", "capability": "SASL-IR", "with": ["a"], "without": ["b"]})
    );
    assert_eq!(
        doc["capability_drift"]["pop3"]["unprobed"],
        json!(["a", "c"])
    );
    let lines = status_lines(&doc);
    assert!(
        lines.contains("capabilities (imap): offered before login: ID SASL PLAIN, LOGIN\n"),
        "{lines}"
    );
    assert!(
        lines.contains("  drift: pre_login SASL-IR: on a; missing on b\n"),
        "{lines}"
    );
    assert!(
        lines.contains("  drift: sasl CRAM-MD5: on b; missing on a\n"),
        "{lines}"
    );
    assert!(lines.contains("(not probed yet: a, c)"), "{lines}");
}
