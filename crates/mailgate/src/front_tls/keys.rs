//! rustls' record protection for one direction, made from the traffic secrets its
//! kernel-connection API hands out (after the handshake and at each TLS 1.3 key update).
//!
//! A direction whose key is 32 bytes (AES-256-GCM, ChaCha20-Poly1305) lets its AEAD context
//! go while the session is idle ([`Sealer::rest`], [`Opener::rest`]) and keeps only the key
//! and IV (in rustls' `AeadKey`, wiped on drop): aws-lc's context is ~640 B per direction,
//! rebuilt in well under a microsecond on the next record. rustls' public API can make an
//! `AeadKey` of 32 bytes only, so an AES-128-GCM direction keeps its context (mailgate
//! chooses a 32-byte-key suite whenever the client offers one: `tls::server_provider`).

use rustls::crypto::cipher::{
    AeadKey, Iv, MessageDecrypter, MessageEncrypter, OutboundChunks, OutboundPlainMessage,
};
use rustls::{ConnectionTrafficSecrets, ContentType, Error, ProtocolVersion, SupportedCipherSuite};

/// A 32-byte key and its IV, to rebuild a direction's context.
struct Raw {
    key: AeadKey,
    iv: Iv,
}

impl Raw {
    fn capture(key: &AeadKey, iv: &Iv) -> Option<Raw> {
        let bytes = <[u8; 32]>::try_from(key.as_ref()).ok()?;
        Some(Raw {
            key: AeadKey::from(bytes),
            iv: Iv::copy(iv.as_ref()),
        })
    }

    fn get(&self) -> Option<(AeadKey, Iv)> {
        let bytes = <[u8; 32]>::try_from(self.key.as_ref()).ok()?;
        Some((AeadKey::from(bytes), Iv::copy(self.iv.as_ref())))
    }
}

fn no_key() -> Error {
    Error::General("record key unavailable".into())
}

/// One direction's context, and what rebuilds it after [`Resting::rest`] let it go.
struct Resting<T: ?Sized> {
    live: Option<Box<T>>,
    raw: Option<Raw>,
}

impl<T: ?Sized> Resting<T> {
    fn new(live: Box<T>, raw: Option<Raw>) -> Self {
        Resting {
            live: Some(live),
            raw,
        }
    }

    /// The context, rebuilt by `build` from the kept key and IV if it was let go.
    fn get(
        &mut self,
        build: impl FnOnce(AeadKey, Iv) -> Result<Box<T>, Error>,
    ) -> Result<&mut T, Error> {
        if self.live.is_none() {
            let (key, iv) = self.raw.as_ref().and_then(Raw::get).ok_or_else(no_key)?;
            self.live = Some(build(key, iv)?);
        }
        self.live.as_deref_mut().ok_or_else(no_key)
    }

    /// Let the context go if it can be rebuilt.
    fn rest(&mut self) {
        if self.raw.is_some() {
            self.live = None;
        }
    }
}

/// The sealing side of the connection (mailgate → client).
pub struct Sealer(Resting<dyn MessageEncrypter>);

impl Sealer {
    /// For records from sequence number `seq` on.
    pub fn new(
        suite: SupportedCipherSuite,
        secrets: ConnectionTrafficSecrets,
        seq: u64,
    ) -> Result<Self, Error> {
        let (key, iv) = key_iv(secrets)?;
        let raw = Raw::capture(&key, &iv);
        Ok(Sealer(Resting::new(sealer(suite, key, iv, seq)?, raw)))
    }

    /// The context, rebuilt if it was let go (the next record is number `seq`).
    pub fn get(
        &mut self,
        suite: SupportedCipherSuite,
        seq: u64,
    ) -> Result<&mut (dyn MessageEncrypter + 'static), Error> {
        self.0.get(|key, iv| sealer(suite, key, iv, seq))
    }

    /// Let the context go if it can be rebuilt.
    pub fn rest(&mut self) {
        self.0.rest();
    }

    #[cfg(test)]
    pub fn is_live(&self) -> bool {
        self.0.live.is_some()
    }
}

/// The opening side of the connection (client → mailgate).
pub struct Opener(Resting<dyn MessageDecrypter>);

impl Opener {
    pub fn new(
        suite: SupportedCipherSuite,
        secrets: ConnectionTrafficSecrets,
    ) -> Result<Self, Error> {
        let (key, iv) = key_iv(secrets)?;
        let raw = Raw::capture(&key, &iv);
        Ok(Opener(Resting::new(decrypter(suite, key, iv), raw)))
    }

    /// The context, rebuilt if it was let go.
    pub fn get(
        &mut self,
        suite: SupportedCipherSuite,
    ) -> Result<&mut (dyn MessageDecrypter + 'static), Error> {
        self.0.get(|key, iv| Ok(decrypter(suite, key, iv)))
    }

    /// Let the context go if it can be rebuilt.
    pub fn rest(&mut self) {
        self.0.rest();
    }

    #[cfg(test)]
    pub fn is_live(&self) -> bool {
        self.0.live.is_some()
    }
}

/// The sealing side for records from sequence number `seq` on.
fn sealer(
    suite: SupportedCipherSuite,
    key: AeadKey,
    iv: Iv,
    seq: u64,
) -> Result<Box<dyn MessageEncrypter>, Error> {
    let mut enc = encrypter(suite, key, iv);
    if seq > 0 {
        // aws-lc's AES-GCM sealing keys for TLS (1.3, and 1.2 as rustls builds them) take
        // the first nonce they see for sequence number 0 and refuse any nonce below the
        // last: a key first used at rustls' next sequence number (after its Finished or
        // tickets) would fail two records later. One record sealed at 0 and thrown away
        // unsent sets them right (nothing sealed here leaves the process).
        let warm_up = OutboundPlainMessage {
            typ: ContentType::ApplicationData,
            version: ProtocolVersion::TLSv1_2,
            payload: OutboundChunks::Single(&[]),
        };
        drop(enc.encrypt(warm_up, 0)?);
    }
    Ok(enc)
}

/// The key and IV rustls extracted for one direction.
fn key_iv(secrets: ConnectionTrafficSecrets) -> Result<(AeadKey, Iv), Error> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => Ok((key, iv)),
        _ => Err(Error::General("unsupported AEAD".into())),
    }
}

fn encrypter(suite: SupportedCipherSuite, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
    match suite {
        SupportedCipherSuite::Tls13(s) => s.aead_alg.encrypter(key, iv),
        SupportedCipherSuite::Tls12(s) => {
            // The extracted IV is the fixed part followed by the explicit nonce's start.
            let fixed = s.aead_alg.key_block_shape().fixed_iv_len;
            let (fixed, explicit) = iv.as_ref().split_at(fixed.min(iv.as_ref().len()));
            s.aead_alg.encrypter(key, fixed, explicit)
        }
    }
}

fn decrypter(suite: SupportedCipherSuite, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
    match suite {
        SupportedCipherSuite::Tls13(s) => s.aead_alg.decrypter(key, iv),
        SupportedCipherSuite::Tls12(s) => {
            let fixed = s.aead_alg.key_block_shape().fixed_iv_len;
            s.aead_alg
                .decrypter(key, &iv.as_ref()[..fixed.min(iv.as_ref().len())])
        }
    }
}
