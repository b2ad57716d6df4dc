//! The server-side TLS configuration: session resumption (TLS 1.3 tickets, TLS 1.2) and the
//! certificate chosen by the client's signature algorithms (ECDSA beside RSA). Handshakes
//! run in memory between a rustls client and mailgate's `ServerConfig`; the certificates are
//! made with the `openssl` command (as the benchmarks do).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use mailgate::tls::{CertSpec, ServerTls};
use rustls::client::Resumption;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, ServerConnection};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate for localhost signed by the test CA (made on first use), with a key made by
/// `newkey` (`rsa:2048` or `ec`).
fn cert(dir: &Path, name: &str, newkey: &str) -> CertSpec {
    if !dir.join("ca.pem").exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=test-ca",
            ],
        );
        std::fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext file");
    }
    let (cert, key, csr) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    let mut args = vec!["req", "-newkey", newkey];
    if newkey == "ec" {
        args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    args.extend([
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &args);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            &cert,
        ],
    );
    CertSpec {
        cert: dir.join(cert),
        key: dir.join(key),
        names: Vec::new(),
    }
}

/// The test CA of `dir`.
fn ca(dir: &Path) -> CertSpec {
    CertSpec {
        cert: dir.join("ca.pem"),
        key: dir.join("ca.key"),
        names: Vec::new(),
    }
}

fn der(spec: &CertSpec) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(&spec.cert).expect("cert PEM")
}

/// A client trusting `roots`; `rsa_only` offers only RSA signature schemes.
fn client(roots: &[&CertSpec], tls12_only: bool, rsa_only: bool) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(der(r)).expect("root");
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if rsa_only {
        let all = provider.signature_verification_algorithms;
        let mapping: Vec<_> = all
            .mapping
            .iter()
            .filter(|(scheme, _)| format!("{scheme:?}").starts_with("RSA_"))
            .copied()
            .collect();
        provider.signature_verification_algorithms = WebPkiSupportedAlgorithms {
            all: all.all,
            mapping: Vec::leak(mapping),
        };
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.resumption = Resumption::in_memory_sessions(8);
    Arc::new(cfg)
}

/// One connection in memory: handshake, a few bytes from the server (so the client reads
/// the server's session tickets), then returns how the handshake went and the leaf served.
fn connect(
    client: &Arc<ClientConfig>,
    server: &Arc<rustls::ServerConfig>,
) -> (Option<HandshakeKind>, CertificateDer<'static>) {
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = ClientConnection::new(client.clone(), name).expect("client");
    let mut s = ServerConnection::new(server.clone()).expect("server");
    let mut greeted = false;
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("client write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("server read");
        }
        s.process_new_packets().expect("server handshake");
        if !s.is_handshaking() && !greeted {
            std::io::Write::write_all(&mut s.writer(), b"* OK\r\n").expect("server data");
            greeted = true;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).expect("server write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read");
        }
        c.process_new_packets().expect("client handshake");
        let mut got = [0u8; 6];
        if !c.is_handshaking()
            && greeted
            && std::io::Read::read_exact(&mut c.reader(), &mut got).is_ok()
        {
            assert_eq!(&got, b"* OK\r\n");
            let leaf = c.peer_certificates().expect("certs")[0]
                .clone()
                .into_owned();
            return (c.handshake_kind(), leaf);
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn resumption_and_certificate_by_signature_algorithm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ec = cert(dir.path(), "ec", "ec");
    let rsa = cert(dir.path(), "rsa", "rsa:2048");
    // ECDSA first: preferred when the client can verify it.
    let tls = ServerTls::load_all(&[ec.clone(), rsa.clone()], &[]).expect("load");

    // TLS 1.3: a full handshake, then resumed with a ticket.
    let root = ca(dir.path());
    let modern = client(&[&root], false, false);
    let (kind, leaf) = connect(&modern, &tls.imap);
    assert_eq!(kind, Some(HandshakeKind::Full));
    assert_eq!(
        leaf,
        der(&ec),
        "a client offering ECDSA gets the ECDSA certificate"
    );
    let (kind, _) = connect(&modern, &tls.imap);
    assert_eq!(kind, Some(HandshakeKind::Resumed), "TLS 1.3 ticket");

    // A client that only verifies RSA signatures gets the RSA certificate.
    let rsa_client = client(&[&ca(dir.path())], false, true);
    let (kind, leaf) = connect(&rsa_client, &tls.imap);
    assert_eq!(kind, Some(HandshakeKind::Full));
    assert_eq!(leaf, der(&rsa));

    // TLS 1.2 resumes too.
    let old = client(&[&ca(dir.path())], true, false);
    let (kind, _) = connect(&old, &tls.pop3);
    assert_eq!(kind, Some(HandshakeKind::Full));
    let (kind, _) = connect(&old, &tls.pop3);
    assert_eq!(kind, Some(HandshakeKind::Resumed), "TLS 1.2");

    // The ticket keys outlive a certificate reload: a new ServerTls resumes old tickets.
    let reloaded = ServerTls::load_all(&[ec.clone(), rsa.clone()], &[]).expect("reload");
    let (kind, _) = connect(&modern, &reloaded.imap);
    assert_eq!(kind, Some(HandshakeKind::Resumed), "across a reload");
}

#[test]
fn sni_names_listed_twice_are_alternatives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let default = cert(dir.path(), "default", "ec");
    let mut ec = cert(dir.path(), "ec", "ec");
    let mut rsa = cert(dir.path(), "rsa", "rsa:2048");
    ec.names = vec!["localhost".into()];
    rsa.names = vec!["localhost".into()];
    let tls = ServerTls::load_all(std::slice::from_ref(&default), &[rsa.clone(), ec.clone()])
        .expect("load");
    // RSA written first: preferred for a client that can verify both.
    let (_, leaf) = connect(&client(&[&ca(dir.path())], false, false), &tls.imap);
    assert_eq!(leaf, der(&rsa));
    assert_eq!(tls.files.len(), 6, "every file is watched for reloads");
}
