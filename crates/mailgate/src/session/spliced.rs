//! The spliced phase of a session: copy bytes until either side closes, the idle limit,
//! a kick (at a quiet moment) or the end of the shutdown grace; count the bytes.

use std::sync::Arc;

use super::{Outcome, Summary};
use crate::conn::Conn;
use crate::server::Shared;
use crate::splice::{Splice, SpliceEnd};
use crate::upstream::Relayed;

pub(super) async fn splice(
    shared: &Arc<Shared>,
    client: Conn,
    relayed: Relayed,
    to_client: Vec<u8>,
    to_backend: Vec<u8>,
    slot: crate::admission::SessionSlot,
    summary: &mut Summary,
) -> Outcome {
    let idle = shared.limits().idle_timeout;
    let mut splice = Splice::new(client, relayed.conn, to_backend, to_client, idle)
        .with_activity(slot.activity());
    let outcome = tokio::select! {
        end = &mut splice => match end {
            SpliceEnd::Closed => Outcome::Spliced,
            SpliceEnd::Idle => Outcome::SpliceIdle,
            SpliceEnd::Error(_) => Outcome::SpliceError,
        },
        _ = shared.force.cancelled() => Outcome::Shutdown,
        request = slot.kicked() => {
            summary.close_detail = Some(request.reason.as_str());
            shared.metrics.kicks.inc();
            Outcome::Kicked
        }
    };
    summary.bytes_up = splice.bytes_up();
    summary.bytes_down = splice.bytes_down();
    if let Some(backend) = &summary.backend {
        shared
            .metrics
            .add_bytes(backend, summary.bytes_up, summary.bytes_down);
    }
    drop(splice);
    drop(slot);
    outcome
}
