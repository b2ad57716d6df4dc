//! The session's metric families: open sessions per listener, spliced bytes (added while
//! sessions run, in batches: [`ByteCounters`]), kicks, connections refused before the
//! greeting and failed TLS handshakes (with [`tls_failure`], the reason of one).

use std::io;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::endpoint::ListenerKind;
use crate::metrics::{
    BytesLabel, ConnRefusal, ConnRefusedLabel, Direction, ListenerLabel, MetricGroup, SharedName,
    TlsFailure, TlsFailureLabel, names,
};
use crate::splice::ByteSink;

/// `sessions_active`, `bytes_total`, `kicks_total`, `connections_refused_total`,
/// `tls_handshake_failures_total`.
#[derive(Debug, Default)]
pub struct SessionMetrics {
    sessions_active: Family<ListenerLabel, Gauge>,
    bytes: Family<BytesLabel, Counter>,
    kicks: Counter,
    refused: Family<ConnRefusedLabel, Counter>,
    tls_failures: Family<TlsFailureLabel, Counter>,
}

/// The `bytes_total` series of one backend, for a splice to add to while it runs.
#[derive(Debug, Clone)]
pub struct ByteCounters {
    family: Family<BytesLabel, Counter>,
    backend: SharedName,
}

impl ByteSink for ByteCounters {
    /// The series is looked up each time (a read lock and a hash, once per batch), so a
    /// series dropped because its backend left the routing table comes back while that
    /// backend's sessions still move bytes.
    fn add(&self, up: u64, down: u64) {
        for (direction, n) in [
            (Direction::ClientToBackend, up),
            (Direction::BackendToClient, down),
        ] {
            if n > 0 {
                self.family
                    .get_or_create(&BytesLabel {
                        backend: self.backend.clone(),
                        direction,
                    })
                    .inc_by(n);
            }
        }
    }
}

impl SessionMetrics {
    /// A gauge of open sessions on `listener`; decremented when the guard drops.
    pub fn session_opened(&self, listener: ListenerKind) -> SessionGauge {
        let g = self
            .sessions_active
            .get_or_create(&ListenerLabel {
                listener: listener.name(),
            })
            .clone();
        g.inc();
        SessionGauge(g)
    }

    /// The `bytes_total` series of `backend`, for a splice to add to as bytes move.
    pub fn byte_counters(&self, backend: &str) -> ByteCounters {
        ByteCounters {
            family: self.bytes.clone(),
            backend: backend.into(),
        }
    }

    /// Add spliced bytes at once (tests, and callers without a running splice).
    pub fn add_bytes(&self, backend: &str, up: u64, down: u64) {
        self.byte_counters(backend).add(up, down);
    }

    /// A client's TLS handshake (implicit TLS, STARTTLS / STLS) on `listener` failed.
    pub fn tls_handshake_failed(&self, listener: ListenerKind, reason: TlsFailure) {
        self.tls_failures
            .get_or_create(&TlsFailureLabel {
                listener: listener.name(),
                reason,
            })
            .inc();
    }

    /// A connection was refused before its greeting.
    pub fn refused_connection(&self, reason: ConnRefusal) {
        self.refused
            .get_or_create(&ConnRefusedLabel { reason })
            .inc();
    }

    /// A spliced session was closed by a kick.
    pub fn kicked(&self) {
        self.kicks.inc();
    }
}

impl MetricGroup for SessionMetrics {
    fn register(&self, r: &mut Registry) {
        // The refusal and handshake vocabularies are small and fixed: every series exists
        // from the start at 0, so rate() and alerts see a change from the first one.
        for reason in ConnRefusal::ALL {
            self.refused
                .get_or_create(&ConnRefusedLabel { reason })
                .inc_by(0);
        }
        for listener in ListenerKind::ALL {
            for reason in TlsFailure::ALL {
                self.tls_failures
                    .get_or_create(&TlsFailureLabel {
                        listener: listener.name(),
                        reason,
                    })
                    .inc_by(0);
            }
        }
        r.register(
            names::SESSIONS_ACTIVE,
            "Open client sessions per listener",
            self.sessions_active.clone(),
        );
        r.register(
            names::BYTES,
            "Bytes spliced, by direction",
            self.bytes.clone(),
        );
        r.register(
            names::KICKS,
            "Spliced sessions closed by a kick",
            self.kicks.clone(),
        );
        r.register(
            names::CONNECTIONS_REFUSED,
            "Client connections refused before the greeting, by limit",
            self.refused.clone(),
        );
        r.register(
            names::TLS_HANDSHAKE_FAILURES,
            "Client TLS handshakes that failed, by listener and reason",
            self.tls_failures.clone(),
        );
    }

    fn forget_backend(&self, backend: &str) {
        for direction in Direction::ALL {
            self.bytes.remove(&BytesLabel {
                backend: backend.into(),
                direction,
            });
        }
    }
}

/// Why a handshake that ended in `err` failed (`timeout` is told apart by the caller: the
/// handshake's deadline is not an I/O error). rustls' errors arrive wrapped in an
/// `InvalidData` I/O error (tokio-rustls).
pub fn tls_failure(err: &io::Error) -> TlsFailure {
    use rustls::AlertDescription as A;
    if let Some(e) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return match e {
            rustls::Error::NoApplicationProtocol
            | rustls::Error::AlertReceived(A::NoApplicationProtocol) => TlsFailure::Alpn,
            rustls::Error::AlertReceived(
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::BadCertificateStatusResponse
                | A::BadCertificateHashValue
                | A::UnrecognisedName,
            ) => TlsFailure::Certificate,
            _ => TlsFailure::Protocol,
        };
    }
    match err.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => TlsFailure::Eof,
        io::ErrorKind::TimedOut => TlsFailure::Timeout,
        _ => TlsFailure::Protocol,
    }
}

/// Decrements `sessions_active` when dropped.
#[derive(Debug)]
pub struct SessionGauge(Gauge);

impl Drop for SessionGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failure_reasons() {
        let tls = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let cases = [
            (tls(rustls::Error::NoApplicationProtocol), TlsFailure::Alpn),
            (
                tls(rustls::Error::AlertReceived(
                    rustls::AlertDescription::UnknownCA,
                )),
                TlsFailure::Certificate,
            ),
            (
                tls(rustls::Error::AlertReceived(
                    rustls::AlertDescription::CertificateExpired,
                )),
                TlsFailure::Certificate,
            ),
            (
                tls(rustls::Error::AlertReceived(
                    rustls::AlertDescription::ProtocolVersion,
                )),
                TlsFailure::Protocol,
            ),
            (
                tls(rustls::Error::InvalidMessage(
                    rustls::InvalidMessage::InvalidContentType,
                )),
                TlsFailure::Protocol,
            ),
            (
                io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof"),
                TlsFailure::Eof,
            ),
            (io::ErrorKind::ConnectionReset.into(), TlsFailure::Eof),
            (io::ErrorKind::TimedOut.into(), TlsFailure::Timeout),
            (io::Error::other("odd"), TlsFailure::Protocol),
        ];
        for (err, want) in cases {
            assert_eq!(tls_failure(&err), want, "{err:?}");
        }
    }

    #[test]
    fn byte_counters_add_and_survive_a_forgotten_backend() {
        let m = SessionMetrics::default();
        let c = m.byte_counters("b");
        c.add(3, 0);
        c.add(4, 10);
        let get = |d| {
            m.bytes
                .get_or_create(&BytesLabel {
                    backend: "b".into(),
                    direction: d,
                })
                .get()
        };
        assert_eq!(get(Direction::ClientToBackend), 7);
        assert_eq!(get(Direction::BackendToClient), 10);
        m.forget_backend("b");
        c.add(1, 0);
        assert_eq!(get(Direction::ClientToBackend), 1);
    }
}
