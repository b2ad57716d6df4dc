//! Several instances: address lists, name expansion, per-instance report, exit codes.

use super::*;

fn target(addr: &str) -> Target {
    Target {
        addr: addr.into(),
        token: Some("t0ken-secret".into()),
    }
}

#[test]
fn admin_values_split_at_commas() {
    let got = admin_list(&[
        "http://127.0.0.1:9143,http://127.0.0.2:9143".into(),
        " http://[::1]:9143 ".into(),
        ",".into(),
    ]);
    assert_eq!(
        got,
        [
            "http://127.0.0.1:9143",
            "http://127.0.0.2:9143",
            "http://[::1]:9143"
        ]
    );
}

#[tokio::test]
async fn targets_keep_order_drop_duplicates_and_share_the_token() {
    let how = Addressing {
        admins: vec![
            "http://127.0.0.2:9143,127.0.0.1:9143".into(),
            "http://127.0.0.2:9143/".into(),
            "http://[::1]:9143".into(),
        ],
        all_addresses: true, // IP literals stay as they are
        nameserver: None,
    };
    let got = targets(&target("127.0.0.1:1"), &how)
        .await
        .expect("targets");
    let addrs: Vec<&str> = got.iter().map(|t| t.addr.as_str()).collect();
    assert_eq!(addrs, ["127.0.0.2:9143", "127.0.0.1:9143", "[::1]:9143"]);
    assert!(
        got.iter()
            .all(|t| t.token.as_deref() == Some("t0ken-secret"))
    );
    // Nothing given: the base target (from -c or the default).
    let got = targets(&target("127.0.0.1:1"), &Addressing::default())
        .await
        .expect("targets");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].addr, "127.0.0.1:1");
    // A bad address is refused before anything is sent.
    let how = Addressing {
        admins: vec!["http://127.0.0.1:9143,https://x:1".into()],
        ..Addressing::default()
    };
    assert!(matches!(
        targets(&target("127.0.0.1:1"), &how).await,
        Err(CtlError::Address(_))
    ));
}

#[tokio::test]
async fn a_name_expands_to_its_addresses_only_when_asked() {
    let named = Addressing {
        admins: vec!["http://localhost:9143".into()],
        all_addresses: false,
        nameserver: None,
    };
    let got = targets(&target("127.0.0.1:1"), &named)
        .await
        .expect("targets");
    assert_eq!(got[0].addr, "localhost:9143", "kept as a name");
    let all = Addressing {
        all_addresses: true,
        ..named
    };
    let got = targets(&target("127.0.0.1:1"), &all)
        .await
        .expect("targets");
    assert!(!got.is_empty());
    for t in &got {
        let a: SocketAddr = t.addr.parse().expect("an address, not a name");
        assert!(a.ip().is_loopback() && a.port() == 9143, "{a}");
    }
    // A name that does not resolve is an error that names it.
    let bad = Addressing {
        admins: vec!["http://no-such-host.invalid:9143".into()],
        all_addresses: true,
        nameserver: None,
    };
    let e = targets(&target("127.0.0.1:1"), &bad)
        .await
        .expect_err("no such name");
    assert!(e.to_string().contains("no-such-host.invalid"), "{e}");
}

#[test]
fn the_report_names_each_instance_and_the_worst_outcome_wins() {
    let ts = [
        target("127.0.0.1:1"),
        target("127.0.0.2:1"),
        target("[::1]:1"),
    ];
    let (out, err, code) = report(
        &ts,
        &[
            Answer::Done("mail1: drained (changed)\n".into()),
            Answer::Done("routing: x\nBACKEND ...\nmail1 ...\n".into()),
            Answer::Done("mail1: drained (unchanged)\n".into()),
        ],
    );
    assert_eq!(code, 0);
    assert!(err.is_empty());
    assert_eq!(
        out,
        "127.0.0.1:1: mail1: drained (changed)\n\
         == 127.0.0.2:1 ==\nrouting: x\nBACKEND ...\nmail1 ...\n\
         [::1]:1: mail1: drained (unchanged)\n"
    );

    let (out, err, code) = report(
        &ts,
        &[
            Answer::Done("ok\n".into()),
            Answer::Refused("POST /backends/x/drain: 404 Not Found: unknown backend".into()),
            Answer::Done("ok\n".into()),
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 2);
    assert!(
        err.contains("127.0.0.2:1: POST /backends/x/drain: 404"),
        "{err}"
    );
    assert!(
        err.ends_with("1 of 3 instances failed: 127.0.0.2:1\n"),
        "{err}"
    );

    let (_, err, code) = report(
        &ts,
        &[
            Answer::Unreachable("cannot reach".into()),
            Answer::Refused("401".into()),
            Answer::Done("ok\n".into()),
        ],
    );
    assert_eq!(code, 2, "unreachable beats refused");
    assert!(err.contains("2 of 3 instances failed: 127.0.0.1:1, 127.0.0.2:1"));
    assert!(!err.contains("t0ken"), "the token never shows");
}

#[tokio::test]
async fn unreachable_instances_are_reported_not_fatal() {
    // Two ports nobody listens on (bound, then released).
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
    };
    let ts = [target(&free().to_string()), target(&free().to_string())];
    let answers = send_all(&ts, &Command::Status { json: false }).await;
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|a| matches!(a, Answer::Unreachable(_))));
    let (_, err, code) = report(&ts, &answers);
    assert_eq!(code, 2);
    assert!(err.contains("2 of 2 instances failed"));
}
