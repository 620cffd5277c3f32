//! Claiming a stable worker ID while a manager starts: [`ClaimNode`], which
//! holds every rule of the claim, run by the one driver on the manager's
//! start thread.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::core::claim::{ClaimEffect, ClaimNode};
use crate::core::ops::{Bucket, Op};
use crate::runtime::driver::{Driver, Flow};
use crate::store::{KvStore, Revision};
use crate::wire::WorkerRecord;
use crate::{Config, Error};

/// Claims an ID by writing `record` under it; a preferred ID whose takeover
/// would end after `deadline` is given up for the lowest free one. `None`
/// when `stop` ended the claim first.
pub(crate) fn claim(
    store: Arc<dyn KvStore>,
    assignments: Arc<dyn KvStore>,
    config: &Config,
    preferred: Option<&str>,
    record: &WorkerRecord,
    deadline: Instant,
    stop: Receiver<()>,
) -> Result<Option<(String, Revision)>, Error> {
    let node = ClaimNode::new(config, preferred, record, Some(deadline));
    let mut ended = None;
    // Waiting for a preferred ID's holder to go quiet (a heartbeat TTL at
    // most) happens on the manager's start thread, which `stop()` ends.
    let perform = move |op: &Op| match op.bucket() {
        Bucket::Assignments => op.perform(assignments.as_ref()),
        _ => op.perform(store.as_ref()),
    };
    // Ended without an effect only by `stop`.
    Driver::new(node, perform).stop(stop).run(&mut |_, effect| {
        ended = Some(effect);
        Flow::End
    });
    match ended {
        Some(ClaimEffect::Claimed {
            id,
            revision,
            took_over_from,
        }) => {
            if let Some(old) = took_over_from {
                log::info!("took over stale worker id {id} from instance {old}");
            }
            Ok(Some((id, revision)))
        }
        Some(ClaimEffect::Failed(e)) => Err(e),
        None => Ok(None),
    }
}
