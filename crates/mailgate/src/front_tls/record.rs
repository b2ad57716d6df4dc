//! The record layer after the handshake, sans I/O: bytes in, plaintext ranges and records
//! to send out. rustls' own record protection does the AEAD (the negotiated suite's
//! `encrypter` / `decrypter`); this file does the framing (RFC 8446 §5, RFC 5246 §6.2),
//! the sequence numbers, what each content type means after the handshake, the alerts, the
//! TLS 1.3 key updates (secrets from rustls' [`KernelConnection`]) and the suite's
//! confidentiality limit.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;

use rustls::crypto::cipher::{InboundOpaqueMessage, OutboundChunks, OutboundPlainMessage};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{
    AlertDescription, ContentType, Error, ExtractedSecrets, HandshakeType, InvalidMessage,
    PeerMisbehaved, ProtocolVersion, SupportedCipherSuite,
};

use super::content::{self, Handshake};
pub use super::error::RecordError;
use super::keys;

/// Largest plaintext of one record (2^14).
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// The record header: type, legacy version, length.
pub const HEADER: usize = 5;
/// Largest record on the wire (TLS 1.2: 2^14 + 2048 of ciphertext).
pub const MAX_RECORD: usize = HEADER + MAX_PLAINTEXT + 2048;
/// Sequence numbers past this end the connection (as rustls does, far below 2^64).
const SEQ_SOFT_LIMIT: u64 = 0xffff_ffff_ffff_0000;
/// Warning alerts tolerated over a connection's life (rustls and BoringSSL: 4).
const WARNINGS: u8 = 4;
/// Key updates tolerated between two application data records (rustls, BoringSSL: 32).
const KEY_UPDATES: u8 = 32;

/// Records to send, in order (each one encoded record).
pub type Outbox = VecDeque<Vec<u8>>;

/// What one call of [`RecordLayer::read`] found at the start of its input.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    /// No complete record yet.
    NeedMore,
    /// Application data: `used` bytes of input consumed, the plaintext is at `plain` (decrypted in place).
    Data { used: usize, plain: Range<usize> },
    /// A record for the record layer itself (a key update, a warning); nothing to deliver.
    Control { used: usize },
    /// The client's close_notify: end of its data.
    Closed { used: usize },
}

/// Keys, sequence numbers and the protocol state of one client-facing TLS connection after
/// its handshake. `Debug` shows the version, suite and counters, never a key.
pub struct RecordLayer {
    suite: SupportedCipherSuite,
    /// TLS 1.3 only: rustls' key schedule, for key updates.
    kernel: Option<Box<KernelConnection<ServerConnectionData>>>,
    enc: keys::Sealer,
    dec: keys::Opener,
    tx_seq: u64,
    rx_seq: u64,
    /// Records sealed under one key before a key update (TLS 1.3) or the close (TLS 1.2).
    tx_limit: u64,
    warnings_left: u8,
    renegotiations_left: u8,
    key_updates_left: u8,
    sent_close: bool,
    failed: bool,
    /// Key updates so far: the client's, ours.
    updates: (u32, u32),
}

impl fmt::Debug for RecordLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordLayer")
            .field("version", &self.version())
            .field("suite", &self.suite.suite())
            .field("tx_seq", &self.tx_seq)
            .field("rx_seq", &self.rx_seq)
            .field("sent_close", &self.sent_close)
            .field("failed", &self.failed)
            .field("key_updates", &self.updates)
            .finish_non_exhaustive()
    }
}

impl RecordLayer {
    /// The record layer for a connection whose handshake rustls finished.
    pub fn new(
        secrets: ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
    ) -> Result<Self, RecordError> {
        let suite = kernel.negotiated_cipher_suite();
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        let limit = match suite {
            SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
            SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
        };
        let tls13 = matches!(suite, SupportedCipherSuite::Tls13(_));
        let enc = keys::Sealer::new(suite, tx, tx_seq).map_err(RecordError::Keys)?;
        Ok(RecordLayer {
            suite,
            kernel: tls13.then(|| Box::new(kernel)),
            enc,
            dec: keys::Opener::new(suite, rx).map_err(RecordError::Keys)?,
            tx_seq,
            rx_seq,
            tx_limit: limit.min(SEQ_SOFT_LIMIT),
            warnings_left: WARNINGS,
            renegotiations_left: 1,
            key_updates_left: KEY_UPDATES,
            sent_close: false,
            failed: false,
            updates: (0, 0),
        })
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> ProtocolVersion {
        if self.is_tls13() {
            ProtocolVersion::TLSv1_3
        } else {
            ProtocolVersion::TLSv1_2
        }
    }

    fn is_tls13(&self) -> bool {
        matches!(self.suite, SupportedCipherSuite::Tls13(_))
    }

    /// True once this side sent its close_notify (or failed): no more writes.
    pub fn write_closed(&self) -> bool {
        self.sent_close || self.failed
    }

    /// Idle: let the receiving side's AEAD context go (rebuilt on the next record) where
    /// the key allows it.
    pub fn rest_rx(&mut self) {
        self.dec.rest();
    }

    /// Nothing left to send: the same for the sending side.
    pub fn rest_tx(&mut self) {
        self.enc.rest();
    }

    /// Key updates so far: (the client's, ours).
    pub fn key_updates(&self) -> (u32, u32) {
        self.updates
    }

    /// Which AEAD contexts are held: (receiving, sending).
    #[cfg(test)]
    pub(crate) fn contexts_live(&self) -> (bool, bool) {
        (self.dec.is_live(), self.enc.is_live())
    }

    #[cfg(test)]
    pub(crate) fn set_tx_limit(&mut self, limit: u64) {
        self.tx_limit = limit;
    }

    /// How many bytes the record at the start of `buf` takes, once its header is there.
    pub fn record_len(buf: &[u8]) -> Option<usize> {
        let h = buf.get(..HEADER)?;
        Some(HEADER + usize::from(u16::from_be_bytes([h[3], h[4]])))
    }

    /// Take the record at the start of `buf` (decrypting it in place). Records the
    /// client's messages ask for (our key update, a no_renegotiation warning, a fatal
    /// alert on an error) go to `out`.
    pub fn read(&mut self, buf: &mut [u8], out: &mut Outbox) -> Result<Record, RecordError> {
        if self.failed {
            return Err(RecordError::Closed);
        }
        let Some(used) = Self::record_len(buf) else {
            return Ok(Record::NeedMore);
        };
        let max = if self.is_tls13() {
            HEADER + MAX_PLAINTEXT + 256
        } else {
            MAX_RECORD
        };
        if used > max {
            return Err(self.fatal(
                AlertDescription::RecordOverflow,
                Error::PeerSentOversizedRecord,
                out,
            ));
        }
        if buf.len() < used {
            return Ok(Record::NeedMore);
        }
        let typ = ContentType::from(buf[0]);
        let outer_ok = match typ {
            ContentType::ApplicationData => true,
            ContentType::Alert | ContentType::Handshake => !self.is_tls13(),
            _ => false,
        };
        if !outer_ok {
            let e = Error::InappropriateMessage {
                expect_types: vec![ContentType::ApplicationData],
                got_type: typ,
            };
            return Err(self.fatal(AlertDescription::UnexpectedMessage, e, out));
        }
        if self.rx_seq >= SEQ_SOFT_LIMIT {
            self.close_notify(out);
            return Err(RecordError::Closed);
        }
        let version = ProtocolVersion::from(u16::from_be_bytes([buf[1], buf[2]]));
        let base = buf.as_ptr() as usize;
        let decrypted = {
            let msg = InboundOpaqueMessage::new(typ, version, &mut buf[HEADER..used]);
            let dec = match self.dec.get(self.suite) {
                Ok(d) => d,
                Err(e) => {
                    self.failed = true;
                    return Err(RecordError::Keys(e));
                }
            };
            dec.decrypt(msg, self.rx_seq).map(|plain| {
                let start = plain.payload.as_ptr() as usize - base;
                (plain.typ, start..start + plain.payload.len())
            })
        };
        let (typ, plain) = match decrypted {
            Ok(d) => d,
            Err(e) => {
                let alert = match e {
                    Error::PeerSentOversizedRecord => AlertDescription::RecordOverflow,
                    Error::PeerMisbehaved(_) => AlertDescription::UnexpectedMessage,
                    _ => AlertDescription::BadRecordMac,
                };
                return Err(self.fatal(alert, e, out));
            }
        };
        self.rx_seq += 1;
        if plain.len() > MAX_PLAINTEXT {
            return Err(self.fatal(
                AlertDescription::RecordOverflow,
                Error::PeerSentOversizedRecord,
                out,
            ));
        }
        match typ {
            ContentType::ApplicationData => {
                self.key_updates_left = KEY_UPDATES;
                Ok(Record::Data { used, plain })
            }
            ContentType::Alert => match self.on_alert(&buf[plain], out)? {
                true => Ok(Record::Closed { used }),
                false => Ok(Record::Control { used }),
            },
            ContentType::Handshake => {
                self.on_handshake(&buf[plain], out)?;
                Ok(Record::Control { used })
            }
            other => {
                let e = Error::InappropriateMessage {
                    expect_types: vec![ContentType::ApplicationData],
                    got_type: other,
                };
                Err(self.fatal(AlertDescription::UnexpectedMessage, e, out))
            }
        }
    }

    /// An alert's meaning: `Ok(true)` for close_notify.
    fn on_alert(&mut self, payload: &[u8], out: &mut Outbox) -> Result<bool, RecordError> {
        let &[level, desc] = payload else {
            let e = Error::InvalidMessage(InvalidMessage::TrailingData("AlertMessagePayload"));
            return Err(self.fatal(AlertDescription::DecodeError, e, out));
        };
        let desc = AlertDescription::from(desc);
        match level {
            _ if desc == AlertDescription::CloseNotify => Ok(true),
            2 => {
                self.failed = true;
                Err(RecordError::Alert(Error::AlertReceived(desc)))
            }
            1 => {
                if self.warnings_left == 0 {
                    let e = PeerMisbehaved::TooManyWarningAlertsReceived.into();
                    return Err(self.fatal(AlertDescription::UnexpectedMessage, e, out));
                }
                self.warnings_left -= 1;
                // TLS 1.3 outlaws warnings but user_canceled (RFC 8446 §6).
                if self.is_tls13() && desc != AlertDescription::UserCanceled {
                    let e = Error::AlertReceived(desc);
                    return Err(self.fatal(AlertDescription::DecodeError, e, out));
                }
                Ok(false)
            }
            _ => {
                let e = Error::AlertReceived(desc);
                Err(self.fatal(AlertDescription::IllegalParameter, e, out))
            }
        }
    }

    fn on_handshake(&mut self, payload: &[u8], out: &mut Outbox) -> Result<(), RecordError> {
        let tls13 = self.is_tls13();
        match content::handshake(payload, tls13) {
            Ok(Handshake::KeyUpdate { requested }) => {
                if self.key_updates_left == 0 {
                    let e = PeerMisbehaved::TooManyKeyUpdateRequests.into();
                    return Err(self.fatal(AlertDescription::UnexpectedMessage, e, out));
                }
                self.key_updates_left -= 1;
                self.update_rx(out)?;
                if requested && !self.write_closed() {
                    self.send_key_update(out)?;
                }
                Ok(())
            }
            Ok(Handshake::ClientHello) => {
                // TLS 1.2 renegotiation: refused with a warning once, as rustls does.
                if self.renegotiations_left == 0 {
                    let e = PeerMisbehaved::TooManyRenegotiationRequests.into();
                    return Err(self.fatal(AlertDescription::UnexpectedMessage, e, out));
                }
                self.renegotiations_left -= 1;
                self.seal_alert(1, AlertDescription::NoRenegotiation, out)
            }
            Ok(Handshake::Other(t)) => {
                let e = Error::InappropriateHandshakeMessage {
                    expect_types: vec![if tls13 {
                        HandshakeType::KeyUpdate
                    } else {
                        HandshakeType::ClientHello
                    }],
                    got_type: t,
                };
                Err(self.fatal(AlertDescription::UnexpectedMessage, e, out))
            }
            Err((alert, e)) => Err(self.fatal(alert, e, out)),
        }
    }

    fn update_rx(&mut self, out: &mut Outbox) -> Result<(), RecordError> {
        let next = match self.kernel.as_mut().map(|k| k.update_rx_secret()) {
            Some(Ok((_, secrets))) => {
                keys::Opener::new(self.suite, secrets).map_err(RecordError::Keys)
            }
            Some(Err(e)) => Err(RecordError::Keys(e)),
            None => Err(RecordError::Keys(Error::General("no key schedule".into()))),
        };
        match next {
            Ok(dec) => {
                self.dec = dec;
                self.rx_seq = 0;
                self.updates.0 += 1;
                Ok(())
            }
            Err(e) => {
                if !self.write_closed() {
                    let _ = self.seal_alert(2, AlertDescription::InternalError, out);
                }
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Our KeyUpdate (update_not_requested), sealed under the old key, then the new key.
    fn send_key_update(&mut self, out: &mut Outbox) -> Result<(), RecordError> {
        self.seal(
            ContentType::Handshake,
            &content::KEY_UPDATE_NOT_REQUESTED,
            out,
        )?;
        let next = match self.kernel.as_mut().map(|k| k.update_tx_secret()) {
            Some(Ok((_, secrets))) => {
                keys::Sealer::new(self.suite, secrets, 0).map_err(RecordError::Keys)
            }
            Some(Err(e)) => Err(RecordError::Keys(e)),
            None => Err(RecordError::Keys(Error::General("no key schedule".into()))),
        };
        match next {
            Ok(enc) => {
                self.enc = enc;
                self.tx_seq = 0;
                self.updates.1 += 1;
                Ok(())
            }
            Err(e) => {
                // The old key may seal no more records after a KeyUpdate: end here.
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Seal `data` as application data records (at most [`MAX_PLAINTEXT`] each).
    pub fn write(&mut self, data: &[u8], out: &mut Outbox) -> Result<(), RecordError> {
        if self.write_closed() {
            return Err(RecordError::Closed);
        }
        for chunk in data.chunks(MAX_PLAINTEXT) {
            self.seal(ContentType::ApplicationData, chunk, out)?;
        }
        Ok(())
    }

    /// Our close_notify, once.
    pub fn close_notify(&mut self, out: &mut Outbox) {
        if !self.write_closed() {
            let _ = self.seal_alert(1, AlertDescription::CloseNotify, out);
            self.sent_close = true;
        }
    }

    /// Queue a fatal alert, mark the connection failed, and return `error` as the peer's fault.
    fn fatal(&mut self, alert: AlertDescription, error: Error, out: &mut Outbox) -> RecordError {
        if !self.write_closed() {
            let _ = self.seal_alert(2, alert, out);
        }
        self.failed = true;
        RecordError::Peer(error)
    }

    fn seal_alert(
        &mut self,
        level: u8,
        desc: AlertDescription,
        out: &mut Outbox,
    ) -> Result<(), RecordError> {
        self.seal(ContentType::Alert, &[level, u8::from(desc)], out)
    }

    /// Seal one record, first keeping the suite's confidentiality limit: a TLS 1.3 key
    /// gets replaced before it, a TLS 1.2 connection ends with a close_notify.
    fn seal(
        &mut self,
        typ: ContentType,
        payload: &[u8],
        out: &mut Outbox,
    ) -> Result<(), RecordError> {
        if self.tx_seq.saturating_add(1) >= self.tx_limit {
            if !self.is_tls13() {
                let _ = self.seal_now(
                    ContentType::Alert,
                    &[1, u8::from(AlertDescription::CloseNotify)],
                    out,
                );
                self.sent_close = true;
                return Err(RecordError::Closed);
            }
            if typ != ContentType::Handshake {
                self.send_key_update(out)?;
            }
        }
        self.seal_now(typ, payload, out)
    }

    fn seal_now(
        &mut self,
        typ: ContentType,
        payload: &[u8],
        out: &mut Outbox,
    ) -> Result<(), RecordError> {
        let msg = OutboundPlainMessage {
            typ,
            version: ProtocolVersion::TLSv1_2,
            payload: OutboundChunks::Single(payload),
        };
        let sealed = match self.enc.get(self.suite, self.tx_seq) {
            Ok(enc) => enc.encrypt(msg, self.tx_seq),
            Err(e) => Err(e),
        };
        let sealed = sealed.map_err(|e| {
            self.failed = true;
            RecordError::Keys(e)
        })?;
        self.tx_seq += 1;
        out.push_back(sealed.encode());
        Ok(())
    }
}
