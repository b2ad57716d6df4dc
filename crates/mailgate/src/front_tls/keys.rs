//! rustls' record protection for one direction, made from the traffic secrets its
//! kernel-connection API hands out (after the handshake and at each TLS 1.3 key update).

use rustls::crypto::cipher::{
    AeadKey, Iv, MessageDecrypter, MessageEncrypter, OutboundChunks, OutboundPlainMessage,
};
use rustls::{ConnectionTrafficSecrets, ContentType, Error, ProtocolVersion, SupportedCipherSuite};

/// The sealing side for records from sequence number `seq` on.
pub fn sealer(
    suite: SupportedCipherSuite,
    secrets: ConnectionTrafficSecrets,
    seq: u64,
) -> Result<Box<dyn MessageEncrypter>, Error> {
    let mut enc = encrypter(suite, secrets)?;
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

fn encrypter(
    suite: SupportedCipherSuite,
    secrets: ConnectionTrafficSecrets,
) -> Result<Box<dyn MessageEncrypter>, Error> {
    let (key, iv) = key_iv(secrets)?;
    Ok(match suite {
        SupportedCipherSuite::Tls13(s) => s.aead_alg.encrypter(key, iv),
        SupportedCipherSuite::Tls12(s) => {
            // The extracted IV is the fixed part followed by the explicit nonce's start.
            let fixed = s.aead_alg.key_block_shape().fixed_iv_len;
            let (fixed, explicit) = iv.as_ref().split_at(fixed.min(iv.as_ref().len()));
            s.aead_alg.encrypter(key, fixed, explicit)
        }
    })
}

pub fn decrypter(
    suite: SupportedCipherSuite,
    secrets: ConnectionTrafficSecrets,
) -> Result<Box<dyn MessageDecrypter>, Error> {
    let (key, iv) = key_iv(secrets)?;
    Ok(match suite {
        SupportedCipherSuite::Tls13(s) => s.aead_alg.decrypter(key, iv),
        SupportedCipherSuite::Tls12(s) => {
            let fixed = s.aead_alg.key_block_shape().fixed_iv_len;
            s.aead_alg
                .decrypter(key, &iv.as_ref()[..fixed.min(iv.as_ref().len())])
        }
    })
}
