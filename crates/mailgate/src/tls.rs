//! TLS: the server side (certificates chosen by SNI and by the client's signature
//! algorithms — e.g. ECDSA beside RSA —, TLS 1.2+ only, strict ALPN, session resumption) and
//! the client side towards backends (verified against a CA file or the system roots).
//!
//! Resumption: TLS 1.3 tickets and TLS 1.2 tickets from one rotating ticketer
//! (aws-lc-rs `Ticketer`: a new key every 6 hours, the previous one still accepted), and a
//! TLS 1.2 session-ID cache for clients without tickets. Both are per process, shared by
//! every listener and kept across certificate reloads.
//!
//! The aws-lc-rs provider is chosen explicitly (`builder_with_provider`): compiling two
//! providers in makes rustls' default builder panic.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
    StoresServerSessions,
};
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

/// The provider for the client-facing side: the same suites, in mailgate's order of
/// preference, which the server follows rather than the client's (`ignore_client_order`).
/// Suites with a 32-byte key (AES-256-GCM, then ChaCha20-Poly1305) come before AES-128-GCM:
/// the record layer lets a 32-byte key's AEAD contexts go while a session is idle
/// (`front_tls::keys`), an AES-128-GCM session keeps them (≈ 600 B more, docs/performance.md). Clients that put
/// AES-128-GCM first (NSS — Thunderbird —, Apple's and Go's stacks, on AES hardware) get
/// AES-256-GCM; a client offering only AES-128-GCM still gets it.
pub fn server_provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites.sort_by_key(|s| key_len(*s) < 32);
    Arc::new(p)
}

/// The length of a suite's record key.
pub fn key_len(suite: rustls::SupportedCipherSuite) -> usize {
    match suite {
        rustls::SupportedCipherSuite::Tls13(s) => s.aead_alg.key_len(),
        rustls::SupportedCipherSuite::Tls12(s) => s.aead_alg.key_block_shape().enc_key_len,
    }
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

/// TLS 1.2 sessions kept for resumption by session ID (clients without tickets): about
/// 200 bytes each, so at most a few MB.
const SESSION_CACHE_SIZE: usize = 16_384;

/// The process's session-ID cache (shared by all listeners and reloads).
fn session_cache() -> Arc<dyn StoresServerSessions> {
    static CACHE: OnceLock<Arc<ServerSessionMemoryCache>> = OnceLock::new();
    CACHE
        .get_or_init(|| ServerSessionMemoryCache::new(SESSION_CACHE_SIZE))
        .clone()
}

/// The process's rotating ticket keys (shared by all listeners and reloads).
fn ticketer() -> Result<Arc<dyn ProducesTickets>, TlsError> {
    static TICKETER: OnceLock<Arc<dyn ProducesTickets>> = OnceLock::new();
    if let Some(t) = TICKETER.get() {
        return Ok(t.clone());
    }
    let t = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| TlsError::Config(format!("session ticket keys: {e}")))?;
    Ok(TICKETER.get_or_init(|| t).clone())
}

/// The certificates for one name (or the default), in configured order.
type Keys = Arc<[Arc<CertifiedKey>]>;

/// The first certificate whose key can sign with a scheme the client offers (an ECDSA
/// certificate for a client that offers ECDSA, else the RSA one); the first one if none
/// can (the handshake then fails with rustls' own alert).
fn choose(keys: &Keys, hello: &ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
    if keys.len() > 1 {
        let offered = hello.signature_schemes();
        if let Some(ck) = keys
            .iter()
            .find(|ck| ck.key.choose_scheme(offered).is_some())
        {
            return Some(ck.clone());
        }
    }
    keys.first().cloned()
}

/// Chooses the certificates by SNI (falling back to the default ones), then one of them by
/// the client's signature algorithms.
struct SniResolver {
    default: Keys,
    exact: HashMap<String, Keys>,
    wildcard: HashMap<String, Keys>,
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
            return choose(&self.default, &hello);
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(keys) = self.exact.get(&name) {
            return choose(keys, &hello);
        }
        if let Some(keys) = name
            .split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
        {
            return choose(keys, &hello);
        }
        choose(&self.default, &hello)
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
    /// Load the default certificate and the SNI certificates named in `tls:` of
    /// mailgate.yaml. A `tls.sni` entry with `names: []` is another certificate for the
    /// default (after `tls.cert`); entries naming the same name are that name's
    /// alternatives. Among a name's certificates the first one the client can verify (by
    /// its signature algorithms) is served: e.g. ECDSA P-256 beside RSA.
    pub fn from_config(t: &mailgate_config::TlsConfig) -> Result<ServerTls, TlsError> {
        let spec = |cert: &PathBuf, key: &PathBuf, names: &[String]| CertSpec {
            cert: cert.clone(),
            key: key.clone(),
            names: names.to_vec(),
        };
        let mut defaults = vec![spec(&t.cert, &t.key, &[])];
        let mut sni = Vec::new();
        for s in &t.sni {
            let c = spec(&s.cert, &s.key, &s.names);
            if s.names.is_empty() {
                defaults.push(c);
            } else {
                sni.push(c);
            }
        }
        ServerTls::load_all(&defaults, &sni)
    }

    pub fn load(default: &CertSpec, sni: &[CertSpec]) -> Result<ServerTls, TlsError> {
        ServerTls::load_all(std::slice::from_ref(default), sni)
    }

    /// [`ServerTls::load`] with several default certificates (e.g. RSA and ECDSA, in order
    /// of preference). SNI entries naming the same name are that name's alternatives, in
    /// the order written.
    pub fn load_all(defaults: &[CertSpec], sni: &[CertSpec]) -> Result<ServerTls, TlsError> {
        let provider = provider();
        let mut not_after: Option<i64> = None;
        let mut files = Vec::new();
        let mut load = |spec: &CertSpec| -> Result<Arc<CertifiedKey>, TlsError> {
            let ck = Arc::new(load_certified_key(spec, &provider)?);
            not_after = match (not_after, leaf_not_after(&ck)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            files.push(spec.cert.clone());
            files.push(spec.key.clone());
            Ok(ck)
        };
        let default: Vec<Arc<CertifiedKey>> =
            defaults.iter().map(&mut load).collect::<Result<_, _>>()?;
        if default.is_empty() {
            return Err(TlsError::Config("no default certificate".into()));
        }
        let mut exact: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        for spec in sni {
            let ck = load(spec)?;
            for name in &spec.names {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard
                        .entry(parent.to_string())
                        .or_default()
                        .push(ck.clone()),
                    None => exact.entry(name).or_default().push(ck.clone()),
                };
            }
        }
        let keys = |m: HashMap<String, Vec<Arc<CertifiedKey>>>| -> HashMap<String, Keys> {
            m.into_iter().map(|(k, v)| (k, Keys::from(v))).collect()
        };
        let resolver = Arc::new(SniResolver {
            default: Keys::from(default),
            exact: keys(exact),
            wildcard: keys(wildcard),
        });
        let (session_storage, ticketer) = (session_cache(), ticketer()?);
        let suites = server_provider();
        let make = |alpn: &[u8]| -> Result<Arc<ServerConfig>, TlsError> {
            let mut cfg = ServerConfig::builder_with_provider(suites.clone())
                .with_protocol_versions(VERSIONS)
                .map_err(|e| TlsError::Config(e.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone());
            // rustls refuses a client that offers ALPN without any of ours
            // (no_application_protocol); a client offering no ALPN is accepted.
            cfg.alpn_protocols = vec![alpn.to_vec()];
            cfg.session_storage = session_storage.clone();
            cfg.ticketer = ticketer.clone();
            // The handshake hands its secrets to mailgate's record layer (front_tls).
            cfg.enable_secret_extraction = true;
            cfg.ignore_client_order = true; // server_provider's order
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

#[cfg(test)]
#[path = "tls_tests.rs"]
pub(crate) mod tests;
