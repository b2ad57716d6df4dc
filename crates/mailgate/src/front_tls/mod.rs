//! The client-facing TLS: rustls does the handshake and keeps the key schedule (its
//! kernel-connection API, meant for kTLS); mailgate's own record layer protects the records
//! afterwards with rustls' AEAD, holding no buffer while a session is idle. rustls'
//! buffered connection keeps a 4 KiB receive buffer and its full connection state for a
//! session's whole life (docs/performance.md, "Idle TLS sessions: rustls'
//! kernel-connection API").
//!
//! [`accept`] (I/O: the handshake over the socket) → [`FrontTls`] (the `AsyncRead` /
//! `AsyncWrite` adapter) → [`record::RecordLayer`] (sans I/O: framing, keys, alerts, key
//! updates).

mod accept;
mod content;
mod error;
mod keys;
pub mod record;
mod stream;

pub use accept::accept;
pub use stream::FrontTls;

#[cfg(test)]
mod tests;
