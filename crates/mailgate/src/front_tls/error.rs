//! The record layer's error: what went wrong and the rustls error it maps to.

use rustls::Error;

/// Why the record layer stopped. Each carries the rustls error a peer's misbehaviour
/// maps to, so that callers classify it as they classify rustls' own.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The client broke the protocol, or a record failed to decrypt (a fatal alert was queued).
    #[error("TLS record from the client: {0}")]
    Peer(Error),
    /// The client sent a fatal alert.
    #[error("TLS alert from the client: {0}")]
    Alert(Error),
    /// Keys could not be made or refreshed, or a record could not be sealed.
    #[error("TLS record layer: {0}")]
    Keys(Error),
    /// The connection ended earlier (an error, a close_notify sent, or a TLS 1.2
    /// connection at its suite's confidentiality limit).
    #[error("TLS connection closed")]
    Closed,
}

impl RecordError {
    /// The rustls error inside, if any.
    pub fn tls(&self) -> Option<&Error> {
        match self {
            RecordError::Peer(e) | RecordError::Alert(e) | RecordError::Keys(e) => Some(e),
            RecordError::Closed => None,
        }
    }
}
