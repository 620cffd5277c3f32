//! Claiming a stable worker ID while a manager starts: the runtime's driver
//! of [`ClaimNode`], which holds every rule of the claim.

use std::time::Instant;

use crate::core::claim::{ClaimEffect, ClaimNode};
use crate::core::ops::Bucket;
use crate::store::{KvError, KvStore, Revision};
use crate::wire::WorkerRecord;
use crate::{Config, Error};

/// Claims an ID by writing `record` under it; a preferred ID whose takeover
/// would end after `deadline` is given up for the lowest free one.
pub(crate) fn claim(
    store: &dyn KvStore,
    assignments: &dyn KvStore,
    config: &Config,
    preferred: Option<&str>,
    record: &WorkerRecord,
    deadline: Instant,
) -> Result<(String, Revision), Error> {
    let mut node = ClaimNode::new(config, preferred, record, Some(deadline));
    loop {
        while let Some(op) = node.poll_op(Instant::now()) {
            let reply = match op.bucket() {
                Bucket::Assignments => op.perform(assignments),
                _ => op.perform(store),
            };
            node.handle_reply(Instant::now(), reply);
        }
        match node.poll_effect() {
            Some(ClaimEffect::Claimed {
                id,
                revision,
                took_over_from,
            }) => {
                if let Some(old) = took_over_from {
                    log::info!("took over stale worker id {id} from instance {old}");
                }
                return Ok((id, revision));
            }
            Some(ClaimEffect::Failed(e)) => return Err(e),
            None => {}
        }
        let Some(at) = node.poll_timeout() else {
            return Err(Error::Kv(KvError::Other(
                "id claim stalled with nothing to wait for".into(),
            )));
        };
        // Waiting for a preferred ID's holder to go quiet (a heartbeat TTL
        // at most), before anything else of the manager runs.
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
    }
}
