//! The spliced phase of a session: copy bytes until either side ends the session, or
//! mailgate ends it — a kick, the end of the shutdown grace, the idle limit. When mailgate
//! ends it, it waits for a quiet moment and tells an IMAP client `* BYE [UNAVAILABLE]`
//! first (only between two responses), so the client reconnects instead of guessing.

use std::future::Future;
use std::pin::Pin;
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
    /// Start the spliced phase: the splice is built here, what the login left over (the
    /// backend's verdict and capabilities) is dropped, and the phase runs as a boxed
    /// future of its own sized for what an idle session holds (`spliced_phase_stays_small`).
    pub(super) fn splice(&mut self, s: Spliced) -> Pin<Box<impl Future<Output = Outcome> + '_>> {
        let limits = &self.rt.limits;
        let Spliced {
            client,
            logged_in,
            to_client,
            to_backend,
            slot,
        } = s;
        let LoggedIn { conn: backend, .. } = logged_in;
        let mut splice = Splice::new(client, backend, to_backend, to_client, limits.idle_timeout)
            .with_activity(slot.activity())
            .with_write_stall(limits.splice_write_stall);
        if self.kind.protocol() == Protocol::Imap {
            splice = splice.with_imap_boundary();
        }
        // bytes_total grows while the session runs (in batches, and the rest at the end).
        if let Some(backend) = &self.summary.backend {
            splice = splice.with_byte_sink(self.ctx.metrics().byte_counters(backend));
        }
        Box::pin(self.spliced(splice, slot))
    }

    /// The phase itself. The splice and the slot are the future's own (an `async fn` would
    /// keep a second copy of its arguments); waiting and closing are futures of their own,
    /// the closing one boxed: an idle session holds only the wait.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of its arguments in the future"
    )]
    fn spliced(
        &mut self,
        mut splice: Splice,
        slot: SessionSlot,
    ) -> impl Future<Output = Outcome> + '_ {
        async move {
            let ended = self.until_ended(&mut splice, &slot).await;
            let outcome = Box::pin(self.close(&mut splice, ended)).await;
            self.summary.bytes_up = splice.bytes_up();
            self.summary.bytes_down = splice.bytes_down();
            drop(splice);
            drop(slot);
            outcome
        }
    }

    /// Splice until either side ends the session, a kick, or the end of the shutdown grace
    /// (spread over the close window).
    async fn until_ended(&mut self, splice: &mut Splice, slot: &SessionSlot) -> Ended {
        let ctx = self.ctx;
        // Where in the close window this session ends after the shutdown grace.
        let spread = self.rt.shutdown_close_window.mul_f64(fastrand::f64());
        tokio::select! {
            end = splice => Ended::ByItself(end),
            _ = async {
                ctx.lifecycle().forced().await;
                tokio::time::sleep(spread).await;
            } => Ended::Ours(SplicedEnd::Shutdown),
            request = slot.kicked() => {
                self.summary.close_detail = Some(request.reason.as_str());
                ctx.metrics().kicked();
                Ended::Ours(SplicedEnd::Kicked)
            }
        }
    }

    /// How the session ends: an IMAP client that mailgate closes on gets `* BYE` at a
    /// quiet moment first.
    async fn close(&mut self, splice: &mut Splice, ended: Ended) -> Outcome {
        let ctx = self.ctx;
        let protocol = self.kind.protocol();
        let limits = &self.rt.limits;
        let bye = |why| (protocol == Protocol::Imap).then(|| spliced_bye(why));
        let write_limit = limits.backend_write_timeout;
        match ended {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output_size<A, B, C, R, F: FnOnce(A, B, C) -> R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }

    /// An idle spliced session holds this phase's future (boxed, beside the session's own
    /// small one) for hours: the splice, the slot and the wait, nothing of the login and
    /// nothing of the closing (docs/performance.md, "Idle sessions").
    #[test]
    fn spliced_phase_stays_small() {
        let phase = output_size(&|s: &'static mut Session<'static>,
                                  splice: Splice,
                                  slot: SessionSlot| {
            s.spliced(splice, slot)
        });
        let held = std::mem::size_of::<Splice>() + std::mem::size_of::<SessionSlot>();
        let wait = output_size(&|s: &'static mut Session<'static>,
                                 splice: &'static mut Splice,
                                 slot: &'static SessionSlot| {
            s.until_ended(splice, slot)
        });
        assert!(
            phase <= held + wait + 64,
            "spliced phase is {phase} bytes: more than the splice and slot ({held}) and the wait ({wait})"
        );
        assert!(phase <= 1280, "spliced phase grew to {phase} bytes");
    }
}
