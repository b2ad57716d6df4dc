//! The spliced phase of a session: copy bytes until either side ends the session, or
//! mailgate ends it — a kick, the end of the shutdown grace, the idle limit. When mailgate
//! ends it, it waits for a quiet moment and tells an IMAP client `* BYE [UNAVAILABLE]`
//! first (only between two responses), so the client reconnects instead of guessing.

use std::time::Duration;

use mailgate_proto::Protocol;
use mailgate_proto::notices::{SplicedEnd, spliced_bye};

use super::{Outcome, Session};
use crate::admission::SessionSlot;
use crate::backend::LoggedIn;
use crate::conn::Conn;
use crate::splice::{Splice, SpliceEnd};

/// Longest wait for a quiet moment after the shutdown grace before closing anyway.
const SHUTDOWN_QUIET_MAX: Duration = Duration::from_secs(2);

/// What the spliced phase needs from a session whose login the backend accepted.
pub(super) struct Spliced {
    pub(super) client: Conn,
    pub(super) logged_in: LoggedIn,
    pub(super) to_client: Vec<u8>,
    pub(super) to_backend: Vec<u8>,
    pub(super) slot: SessionSlot,
}

enum Ended {
    ByItself(SpliceEnd),
    Ours(SplicedEnd),
}

impl Session<'_> {
    pub(super) async fn splice(&mut self, s: Spliced) -> Outcome {
        let ctx = self.ctx;
        let protocol = self.kind.protocol();
        let limits = &self.rt.limits;
        let Spliced {
            client,
            logged_in,
            to_client,
            to_backend,
            slot,
        } = s;
        let mut splice = Splice::new(
            client,
            logged_in.conn,
            to_backend,
            to_client,
            limits.idle_timeout,
        )
        .with_activity(slot.activity())
        .with_write_stall(limits.splice_write_stall);
        if protocol == Protocol::Imap {
            splice = splice.with_imap_boundary();
        }
        // bytes_total grows while the session runs (in batches, and the rest at the end).
        if let Some(backend) = &self.summary.backend {
            splice = splice.with_byte_sink(ctx.metrics().byte_counters(backend));
        }
        // Where in the close window this session ends after the shutdown grace.
        let window = self.rt.shutdown_close_window;
        let spread = window.mul_f64(fastrand::f64());
        let ended = tokio::select! {
            end = &mut splice => Ended::ByItself(end),
            _ = async {
                ctx.lifecycle().forced().await;
                tokio::time::sleep(spread).await;
            } => Ended::Ours(SplicedEnd::Shutdown),
            request = slot.kicked() => {
                self.summary.close_detail = Some(request.reason.as_str());
                ctx.metrics().kicked();
                Ended::Ours(SplicedEnd::Kicked)
            }
        };
        let bye = |why| (protocol == Protocol::Imap).then(|| spliced_bye(why));
        let write_limit = limits.backend_write_timeout;
        let outcome = match ended {
            Ended::ByItself(SpliceEnd::BackendClosed) => Outcome::BackendClosed,
            Ended::ByItself(SpliceEnd::ClientClosed) => Outcome::Spliced,
            Ended::ByItself(SpliceEnd::Error(_)) => Outcome::SpliceError,
            Ended::ByItself(SpliceEnd::WriteStalled) => {
                self.summary.close_detail = Some("write_stalled");
                Outcome::SpliceError
            }
            Ended::ByItself(SpliceEnd::Idle) => {
                splice.goodbye(bye(SplicedEnd::Idle), write_limit).await;
                Outcome::SpliceIdle
            }
            Ended::Ours(SplicedEnd::Shutdown) => {
                let quiet = ctx.admission().quiet_period();
                match splice.until_quiet(quiet, SHUTDOWN_QUIET_MAX).await {
                    Some(SpliceEnd::BackendClosed) => Outcome::BackendClosed,
                    Some(SpliceEnd::Error(_) | SpliceEnd::WriteStalled) => Outcome::SpliceError,
                    Some(_) => Outcome::Spliced,
                    None => {
                        splice.goodbye(bye(SplicedEnd::Shutdown), write_limit).await;
                        Outcome::Shutdown
                    }
                }
            }
            // `kicked()` resolved at a quiet moment already.
            Ended::Ours(SplicedEnd::Kicked) | Ended::Ours(SplicedEnd::Idle) => {
                splice.goodbye(bye(SplicedEnd::Kicked), write_limit).await;
                Outcome::Kicked
            }
        };
        self.summary.bytes_up = splice.bytes_up();
        self.summary.bytes_down = splice.bytes_down();
        drop(splice);
        drop(slot);
        outcome
    }
}
