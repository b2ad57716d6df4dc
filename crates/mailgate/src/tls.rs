//! TLS: the server side (certificates chosen by SNI, TLS 1.2+ only, strict ALPN) and the
//! client side towards backends (verified against a CA file or the system roots).
//!
//! The aws-lc-rs provider is chosen explicitly (`builder_with_provider`): compiling two
//! providers in makes rustls' default builder panic.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Why TLS material could not be loaded. Names the file; never contains key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file could not be read or holds no certificate.
    #[error("{path}: cannot load certificate chain: {reason}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A key file could not be read or holds no usable private key.
    #[error("{path}: cannot load private key: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the configuration (e.g. key does not match certificate).
    #[error("{0}")]
    Config(String),
}

/// The crypto provider used everywhere.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A certificate file and key file, with the names to select it by SNI (empty = default).
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// SNI names (lowercase, `*.suffix` allowed). Empty for the default certificate.
    pub names: Vec<String>,
}

fn load_certified_key(
    spec: &CertSpec,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&spec.cert)
        .map_err(|e| TlsError::Cert {
            path: spec.cert.clone(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert {
            path: spec.cert.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: spec.cert.clone(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&spec.key).map_err(|e| TlsError::Key {
        path: spec.key.clone(),
        reason: e.to_string(),
    })?;
    let ck = CertifiedKey::from_der(certs, key, provider).map_err(|e| TlsError::Key {
        path: spec.key.clone(),
        reason: e.to_string(),
    })?;
    Ok(ck)
}

/// Chooses a certificate by SNI; falls back to the default one.
struct SniResolver {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ck) = self.exact.get(&name) {
            return Some(ck.clone());
        }
        if let Some(ck) = name
            .split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
        {
            return Some(ck.clone());
        }
        Some(self.default.clone())
    }
}

/// Server TLS configurations, one per protocol (they differ in ALPN).
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// For IMAP listeners (ALPN `imap`).
    pub imap: Arc<ServerConfig>,
    /// For POP3 listeners (ALPN `pop3`).
    pub pop3: Arc<ServerConfig>,
    /// The certificate and key files loaded.
    pub files: Vec<PathBuf>,
    /// Earliest notAfter (Unix seconds) of the served leaf certificates, if readable.
    pub not_after: Option<i64>,
}

impl ServerTls {
    /// Load the default certificate and the SNI certificates.
    /// The certificates named in `tls:` of mailgate.yaml.
    pub fn from_config(t: &mailgate_config::TlsConfig) -> Result<ServerTls, TlsError> {
        let default = CertSpec {
            cert: t.cert.clone(),
            key: t.key.clone(),
            names: Vec::new(),
        };
        let sni: Vec<CertSpec> = t
            .sni
            .iter()
            .map(|s| CertSpec {
                cert: s.cert.clone(),
                key: s.key.clone(),
                names: s.names.clone(),
            })
            .collect();
        ServerTls::load(&default, &sni)
    }

    pub fn load(default: &CertSpec, sni: &[CertSpec]) -> Result<ServerTls, TlsError> {
        let provider = provider();
        let default_ck = Arc::new(load_certified_key(default, &provider)?);
        let mut not_after = leaf_not_after(&default_ck);
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut files = vec![default.cert.clone(), default.key.clone()];
        for spec in sni {
            let ck = Arc::new(load_certified_key(spec, &provider)?);
            not_after = match (not_after, leaf_not_after(&ck)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            files.push(spec.cert.clone());
            files.push(spec.key.clone());
            for name in &spec.names {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.insert(parent.to_string(), ck.clone()),
                    None => exact.insert(name, ck.clone()),
                };
            }
        }
        let resolver = Arc::new(SniResolver {
            default: default_ck,
            exact,
            wildcard,
        });
        let make = |alpn: &[u8]| -> Result<Arc<ServerConfig>, TlsError> {
            let mut cfg = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(VERSIONS)
                .map_err(|e| TlsError::Config(e.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone());
            // rustls refuses a client that offers ALPN without any of ours
            // (no_application_protocol); a client offering no ALPN is accepted.
            cfg.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(cfg))
        };
        Ok(ServerTls {
            imap: make(b"imap")?,
            pop3: make(b"pop3")?,
            files,
            not_after,
        })
    }
}

/// notAfter of a certified key's leaf certificate, in Unix seconds (for the expiry metric).
fn leaf_not_after(ck: &CertifiedKey) -> Option<i64> {
    let leaf = ck.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Accepts any backend certificate: only for `tls_verify: false`, an explicit choice.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Build the client configuration used towards a backend.
pub fn backend_client_config(
    ca_file: Option<&Path>,
    verify: bool,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let cfg = if !verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| TlsError::Cert {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })? {
                    let cert = cert.map_err(|e| TlsError::Cert {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    })?;
                    roots.add(cert).map_err(|e| TlsError::Cert {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    })?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    let _ = roots.add(cert);
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(cfg))
}
