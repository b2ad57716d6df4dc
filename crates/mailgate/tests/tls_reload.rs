//! Certificates reload with the routing file: a bad certificate on reload keeps the old one
//! and the error names the file; a good one is served to new connections. Also: strict ALPN
//! and TLS 1.2+ on the implicit-TLS listener.

use std::path::Path;
use std::sync::Arc;

use mailgate::listener::ListenerKind;
use mailgate::proxy::{Listeners, Proxy, serve};
use mailgate::reload::Trigger;
use mailgate_config::{Config, RoutingTable};
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn write_cert(dir: &Path, cn: &str) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
    cert.der().to_vec()
}

/// Handshake with `alpn` and return the certificate the server presented and the greeting.
async fn handshake(
    addr: std::net::SocketAddr,
    alpn: &[&[u8]],
) -> std::io::Result<(Vec<u8>, String)> {
    // mailgate's own "tls_verify: false" client configuration: accepts any certificate.
    let mut cfg =
        (*mailgate::tls::backend_client_config(None, false).expect("client config")).clone();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await?;
    let der = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let mut buf = vec![0u8; 512];
    let n = tls.read(&mut buf).await?;
    Ok((der, String::from_utf8_lossy(&buf[..n]).into_owned()))
}

#[tokio::test]
async fn bad_certificate_on_reload_changes_nothing_good_one_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = write_cert(dir.path(), "first");
    std::fs::write(
        dir.path().join("routing.yaml"),
        "backends:\n  b1:\n    host: 127.0.0.1\n    imap_port: 9\ndomains:\n  example.com: b1\n",
    )
    .expect("routing");
    let cfg_path = dir.path().join("mailgate.yaml");
    let yaml = "listen:\n  imaps: 127.0.0.1:0\ntls:\n  cert: cert.pem\n  key: key.pem\nrouting_file: routing.yaml\n";
    let config = Config::parse(yaml, &cfg_path).expect("config");
    let loaded = RoutingTable::load(&config.routing_file).expect("routing");
    let tls = mailgate::proxy::load_tls(config.tls.as_ref().expect("tls")).expect("certs");
    let shared = Proxy::new(config, loaded.table, Some(tls));
    let listener = mailgate::listener::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let stop2 = stop.clone();
    let server = tokio::spawn(serve(
        shared.clone(),
        Listeners {
            public: vec![(ListenerKind::Imaps, listener)],
        },
        async move { stop2.cancelled().await },
    ));

    let (der, greeting) = handshake(addr, &[]).await.expect("no ALPN is accepted");
    assert_eq!(der, first);
    assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
    handshake(addr, &[b"imap"])
        .await
        .expect("ALPN imap is accepted");
    assert!(
        handshake(addr, &[b"pop3", b"h2"]).await.is_err(),
        "ALPN without imap must fail the handshake"
    );

    // A truncated certificate: reload fails, names the file, and the old one stays.
    std::fs::write(
        dir.path().join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n",
    )
    .expect("w");
    let err = shared
        .reloader()
        .reload(Trigger::Admin)
        .await
        .expect_err("bad cert must fail the reload")
        .to_string();
    assert!(err.contains("cert.pem"), "error names the file: {err}");
    let (der, _) = handshake(addr, &[]).await.expect("still serving");
    assert_eq!(der, first, "old certificate kept");

    // A good new certificate is picked up.
    let second = write_cert(dir.path(), "second");
    shared
        .reloader()
        .reload(Trigger::Admin)
        .await
        .expect("good reload");
    let (der, _) = handshake(addr, &[]).await.expect("serving");
    assert_eq!(der, second, "new certificate served");

    stop.cancel();
    server.await.expect("server task");
}
