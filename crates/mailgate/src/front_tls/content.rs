//! What a client may send in a handshake record once the handshake is over: a TLS 1.3
//! KeyUpdate, or (TLS 1.2) a ClientHello asking to renegotiate. Pure parsing.

use rustls::{AlertDescription, Error, HandshakeType, InvalidMessage, PeerMisbehaved};

/// handshake type key_update (RFC 8446 §4.6.3).
const KEY_UPDATE: u8 = 24;
/// handshake type client_hello.
const CLIENT_HELLO: u8 = 1;

/// Our KeyUpdate answer: type, 24-bit length 1, update_not_requested.
pub const KEY_UPDATE_NOT_REQUESTED: [u8; 5] = [KEY_UPDATE, 0, 0, 1, 0];

/// A post-handshake message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// TLS 1.3 KeyUpdate; `requested`: the client asks for ours too.
    KeyUpdate { requested: bool },
    /// TLS 1.2: a renegotiation attempt.
    ClientHello,
    /// Anything else (never valid here).
    Other(HandshakeType),
}

/// The one message in a handshake record's plaintext. A KeyUpdate must end its record
/// (RFC 8446 §5.1: no message may span a key change); messages split over records are not
/// accepted (no client needs them for these short messages). A TLS 1.2 ClientHello is
/// recognised by its first fragment and refused whole, so only its type counts.
pub fn handshake(payload: &[u8], tls13: bool) -> Result<Handshake, (AlertDescription, Error)> {
    let decode = |e: InvalidMessage| (AlertDescription::DecodeError, Error::InvalidMessage(e));
    let Some(&typ) = payload.first() else {
        return Err(decode(InvalidMessage::InvalidEmptyPayload));
    };
    if !tls13 {
        return Ok(match typ {
            CLIENT_HELLO => Handshake::ClientHello,
            t => Handshake::Other(HandshakeType::from(t)),
        });
    }
    if typ != KEY_UPDATE {
        return Ok(Handshake::Other(HandshakeType::from(typ)));
    }
    let Some(&[_, a, b, c]) = payload.get(..4) else {
        return Err(decode(InvalidMessage::MessageTooShort));
    };
    if u32::from_be_bytes([0, a, b, c]) != 1 {
        return Err(decode(InvalidMessage::InvalidKeyUpdate));
    }
    if payload.len() != 5 {
        // Split over records, or followed by more: either way across a key change.
        return Err((
            AlertDescription::UnexpectedMessage,
            PeerMisbehaved::KeyEpochWithPendingFragment.into(),
        ));
    }
    match payload[4] {
        0 => Ok(Handshake::KeyUpdate { requested: false }),
        1 => Ok(Handshake::KeyUpdate { requested: true }),
        _ => Err((
            AlertDescription::IllegalParameter,
            Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let ku = |p: &[u8]| handshake(p, true);
        assert_eq!(
            ku(&[24, 0, 0, 1, 0]),
            Ok(Handshake::KeyUpdate { requested: false })
        );
        assert_eq!(
            ku(&[24, 0, 0, 1, 1]),
            Ok(Handshake::KeyUpdate { requested: true })
        );
        assert_eq!(
            ku(&[24, 0, 0, 1, 2]).expect_err("refused").0,
            AlertDescription::IllegalParameter
        );
        assert_eq!(
            ku(&[24, 0, 0, 2, 0, 0]).expect_err("refused").0,
            AlertDescription::DecodeError
        );
        assert_eq!(
            ku(&[24, 0, 0]).expect_err("refused").0,
            AlertDescription::DecodeError
        );
        assert_eq!(
            ku(&[24, 0, 0, 1]).expect_err("refused").0,
            AlertDescription::UnexpectedMessage
        );
        // Another message after the KeyUpdate in the same record.
        let two = [24, 0, 0, 1, 0, 24, 0, 0, 1, 0];
        assert_eq!(
            ku(&two).expect_err("refused").0,
            AlertDescription::UnexpectedMessage
        );
        assert_eq!(
            ku(&[]).expect_err("refused").0,
            AlertDescription::DecodeError
        );
        assert_eq!(
            ku(&[4, 0, 0, 0]),
            Ok(Handshake::Other(HandshakeType::NewSessionTicket))
        );
        assert_eq!(handshake(&[1, 0, 0, 9], false), Ok(Handshake::ClientHello));
        assert_eq!(
            handshake(&[24, 0, 0, 1, 0], false),
            Ok(Handshake::Other(HandshakeType::KeyUpdate))
        );
    }
}
