//! The client-facing suite choice: mailgate's order, 32-byte keys first, whatever order the
//! client lists them in; a client with AES-128-GCM only still gets it.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::cipher_suite as cs;
use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConnection, SupportedCipherSuite,
};

use super::*;

/// mailgate's server TLS for `localhost` (a fresh self-signed ECDSA certificate), and roots
/// trusting it; the directory holding the files lives as long as the value.
pub(crate) struct Server {
    pub config: ServerTls,
    pub roots: RootCertStore,
    _dir: tempfile::TempDir,
}

pub(crate) fn server() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(dir.path().join("c.pem"), ck.cert.pem()).expect("write");
    std::fs::write(dir.path().join("k.pem"), ck.signing_key.serialize_pem()).expect("write");
    let spec = CertSpec {
        cert: dir.path().join("c.pem"),
        key: dir.path().join("k.pem"),
        names: vec![],
    };
    let mut roots = RootCertStore::empty();
    roots.add(ck.cert.der().clone()).expect("root");
    Server {
        config: ServerTls::load(&spec, &[]).expect("server tls"),
        roots,
        _dir: dir,
    }
}

/// The suite mailgate's server config picks for a client offering `offered`, in that order.
fn negotiated(server: &Server, offered: &[SupportedCipherSuite]) -> SupportedCipherSuite {
    let provider = CryptoProvider {
        cipher_suites: offered.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    let client_cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(VERSIONS)
        .expect("versions")
        .with_root_certificates(server.roots.clone())
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = ClientConnection::new(Arc::new(client_cfg), name).expect("client");
    let mut srv = ServerConnection::new(server.config.imap.clone()).expect("server");
    for _ in 0..20 {
        if !client.is_handshaking() && !srv.is_handshaking() {
            break;
        }
        let mut buf = Vec::new();
        client.write_tls(&mut buf).expect("client writes");
        srv.read_tls(&mut buf.as_slice()).expect("server reads");
        srv.process_new_packets().expect("server handshake");
        let mut buf = Vec::new();
        srv.write_tls(&mut buf).expect("server writes");
        client.read_tls(&mut buf.as_slice()).expect("client reads");
        client.process_new_packets().expect("client handshake");
    }
    assert!(!srv.is_handshaking(), "handshake did not finish");
    let suite = srv.negotiated_cipher_suite().expect("a suite");
    assert_eq!(Some(suite), client.negotiated_cipher_suite());
    suite
}

#[test]
fn a_client_listing_aes_128_first_gets_aes_256() {
    let s = server();
    // NSS (Thunderbird), Apple's and Go's TLS on AES hardware list AES-128-GCM first.
    let nss = [
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
    ];
    assert_eq!(negotiated(&s, &nss), cs::TLS13_AES_256_GCM_SHA384);
    let tls12 = [
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ];
    assert_eq!(
        negotiated(&s, &tls12),
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    );
}

#[test]
fn chacha20_is_chosen_over_aes_128_and_aes_128_alone_still_works() {
    let s = server();
    let offered = [
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    assert_eq!(negotiated(&s, &offered), cs::TLS13_CHACHA20_POLY1305_SHA256);
    assert_eq!(
        negotiated(&s, &[cs::TLS13_AES_128_GCM_SHA256]),
        cs::TLS13_AES_128_GCM_SHA256
    );
    assert_eq!(
        negotiated(&s, &[cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]),
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
}

#[test]
fn the_server_order_keeps_every_suite_and_puts_32_byte_keys_first() {
    let default = rustls::crypto::aws_lc_rs::default_provider().cipher_suites;
    let ours = server_provider().cipher_suites.clone();
    assert_eq!(ours.len(), default.len());
    assert!(default.iter().all(|s| ours.contains(s)));
    let first_short = ours.iter().position(|s| key_len(*s) < 32).expect("AES-128");
    assert!(
        ours[first_short..].iter().all(|s| key_len(*s) < 32),
        "{ours:?}"
    );
    assert_eq!(ours[0], cs::TLS13_AES_256_GCM_SHA384);
}
