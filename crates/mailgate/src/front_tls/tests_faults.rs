//! What the record layer does with records it must refuse, and at the confidentiality
//! limit: the client (real rustls) must see the alert, the server's read an error that
//! carries rustls' error.

use super::*;

/// A connected pair after the handshake (and one byte each way, so that TLS 1.3 tickets
/// are out of the way).
async fn established(suite: SupportedCipherSuite) -> (Client, FrontTls<Trickle>) {
    let setup = Setup::new();
    established_with(&setup, setup.client(suite), 9).await
}

/// The server's read fails with `want` inside; the client then receives alert `alert`.
async fn refused(mut c: Client, mut s: FrontTls<Trickle>, want: &str, alert: AlertDescription) {
    let mut buf = [0u8; 64];
    let err = s.read(&mut buf).await.expect_err("refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(inner.is_some(), "rustls error inside: {err:?}");
    assert!(format!("{err}").contains(want), "{err} lacks {want}");
    // Later reads fail too; writes are refused.
    assert!(s.read(&mut buf).await.is_err());
    assert!(s.write_all(b"z").await.is_err());
    drop(s);
    match c.read_plain(1).await {
        Err(rustls::Error::AlertReceived(a)) => assert_eq!(a, alert),
        other => panic!("expected alert {alert:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn corrupted_record_is_bad_record_mac() {
    for suite in [SUITES[0], SUITES[2], SUITES[3], SUITES[5]] {
        let (mut c, s) = established(suite).await;
        c.tls.writer().write_all(b"a1 NOOP\r\n").expect("buffered");
        let mut rec = Vec::new();
        c.tls.write_tls(&mut rec).expect("tls");
        let last = rec.len() - 1;
        rec[last] ^= 0x40;
        c.send_raw(&rec).await.expect("send");
        refused(c, s, "ecrypt", AlertDescription::BadRecordMac).await;
    }
}

#[tokio::test]
async fn oversized_record_is_record_overflow() {
    for suite in [SUITES[0], SUITES[3]] {
        let (mut c, s) = established(suite).await;
        let len: u16 = 16384 + 2049;
        let mut rec = vec![23, 3, 3];
        rec.extend_from_slice(&len.to_be_bytes());
        c.send_raw(&rec).await.expect("send");
        refused(c, s, "excess record size", AlertDescription::RecordOverflow).await;
    }
}

#[tokio::test]
async fn unknown_content_type_is_unexpected_message() {
    for suite in [SUITES[0], SUITES[3]] {
        for typ in [0x40u8, 20, 24] {
            let (mut c, s) = established(suite).await;
            c.send_raw(&[typ, 3, 3, 0, 5, 1, 2, 3, 4, 5])
                .await
                .expect("send");
            refused(c, s, "unexpected", AlertDescription::UnexpectedMessage).await;
        }
    }
}

#[tokio::test]
async fn eof_without_close_notify_is_unexpected_eof() {
    let (c, mut s) = established(SUITES[0]).await;
    drop(c);
    let mut buf = [0u8; 8];
    let err = s.read(&mut buf).await.expect_err("no close_notify");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn server_close_notify_ends_the_clients_reads() {
    for suite in [SUITES[1], SUITES[4]] {
        let (mut c, mut s) = established(suite).await;
        s.shutdown().await.expect("shutdown");
        assert!(
            s.write_all(b"late").await.is_err(),
            "no writes after close_notify"
        );
        assert_eq!(c.read_plain(1).await.expect("clean"), b"");
        // The client may still send; the server reads it, then the client's close.
        c.write(b"bye").await;
        c.tls.send_close_notify();
        c.send_tls().await.expect("close");
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.expect("to end");
        assert_eq!(got, b"bye");
    }
}

/// Many records past a tiny confidentiality limit: TLS 1.3 replaces its key before it
/// (the client follows our KeyUpdates), TLS 1.2 ends with a close_notify.
#[tokio::test]
async fn confidentiality_limit() {
    let (mut c, mut s) = established(SUITES[2]).await;
    s.layer_mut().set_tx_limit(3);
    let data = pattern(200_000, 3);
    let writer = tokio::spawn(async move {
        for piece in data.chunks(1000) {
            s.write_all(piece).await?;
        }
        s.flush().await?;
        io::Result::Ok(s)
    });
    let got = c.read_plain(200_000).await.expect("through key updates");
    assert!(got == pattern(200_000, 3));
    let _s = writer.await.expect("join").expect("writes");

    let (mut c, mut s) = established(SUITES[3]).await;
    s.layer_mut().set_tx_limit(5);
    let mut refused = false;
    for _ in 0..10 {
        if s.write_all(b"0123456789").await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "TLS 1.2 stops at the limit");
    let _ = s.flush().await;
    let got = c.read_plain(1000).await.expect("clean close");
    assert!(got.len() < 100 && got.len() % 10 == 0, "{}", got.len());
}

/// Send `bytes` to a fresh handshake; it must fail with rustls' error inside the I/O
/// error. Returns what the server wrote before the end.
async fn failed_handshake(setup: &Setup, bytes: &[u8]) -> Vec<u8> {
    let (mut a, b) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(accept(b, setup.server.clone()));
    a.write_all(bytes).await.expect("write");
    let err = task.await.expect("join").expect_err("a failed handshake");
    assert!(
        err.get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .is_some(),
        "{err:?}"
    );
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).await.expect("read");
    rest
}

/// A failed handshake: rustls' error inside the I/O error (the failure metric's reason
/// comes from it) and rustls' alert, when it has one, on the wire.
#[tokio::test]
async fn failed_handshakes_send_rustls_alert() {
    let setup = Setup::new();
    // Whatever rustls queued for it (here: nothing), then the end; no panic on the way
    // (rustls must see its buffer again to give out its alert).
    let rest = failed_handshake(&setup, b"\x16\x03\x01\x00\x05hello").await;
    assert!(rest.is_empty() || rest[0] == 21, "{rest:?}");

    // Plaintext on the TLS port: a record-level error, rustls' decode_error alert, once.
    let rest = failed_handshake(&setup, b"a1 CAPABILITY\r\n").await;
    assert_eq!(rest, [21, 3, 3, 0, 2, 2, 50], "one decode_error alert");

    // ALPN offered without imap: no_application_protocol, as the metric expects.
    let mut cfg = (*setup.client(SUITES[0])).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (mut c, task) = connect(&setup, Arc::new(cfg), Frag::Whole, 5);
    c.send_tls().await.expect("hello");
    let err = task.await.expect("join").expect_err("alpn");
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert_eq!(inner, Some(&rustls::Error::NoApplicationProtocol));
    let mut got = c.recv().await;
    while let Ok(true) = got {
        got = c.recv().await;
    }
    match got {
        Err(rustls::Error::AlertReceived(a)) => {
            assert_eq!(a, AlertDescription::NoApplicationProtocol)
        }
        other => panic!("expected the alert, got {other:?}"),
    }
}
