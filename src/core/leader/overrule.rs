//! An epoch no lease could have had. A record stamped with an epoch above
//! this term's, found while this term's lease is valid, cannot be a newer
//! leader's: a newer leader's acquiring write would have broken the chain of
//! compare-and-set renewals that keeps this lease valid. So the lease bucket
//! forgot (a dropped or rolled-back bucket: epochs, its revisions, started
//! again below the ones stamped before) or someone wrote the value by hand.
//! Taking it for a deposition would wedge the group for good (nobody would
//! ever write again); it is reported and overwritten instead. Without a
//! valid lease it is what it looks like: a newer leader's, and this term
//! stops writing.

use super::{LeaderEffect, LeaderNode};
use crate::Error;

impl LeaderNode {
    /// Whether `key`, found stamped with `epoch` above this term's, is
    /// overwritten (reported) rather than taken as a newer leader's.
    pub(super) fn overrules(&mut self, key: &str, epoch: u64) -> bool {
        if !self.lease_valid(self.now) {
            return false;
        }
        self.effects.push_back(LeaderEffect::Report(Error::Corrupt {
            bucket: self.p.buckets.1.clone(),
            key: key.to_string(),
            reason: format!(
                "epoch {epoch} is above this leader's {} while its lease is valid: \
                 the lease bucket forgot, or the value was written by hand; overwritten",
                self.epoch
            ),
        }));
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::clock::SystemClock;
    use crate::core::leader::{LeaderEffect, LeaderNode, LeaderParams};
    use crate::store::memory::MemoryBackend;
    use crate::store::{BucketConfig, KvStore};
    use crate::strategy::BoundedLoad;
    use crate::wire::{self, AssignmentRecord, OwnedPartition};
    use crate::{Config, Error, Partition, RebalanceKind};

    /// The assignments bucket still holds a record of epoch 50 while the
    /// lease bucket, lost, started epochs again: a new leader of epoch 2
    /// with a valid lease re-stamps it instead of stopping for good.
    /// Returns whether the term took office, and what the key holds after.
    fn take_office(lease_valid: bool) -> (bool, bool, AssignmentRecord) {
        let t0 = Instant::now();
        let store = MemoryBackend::new(Arc::new(SystemClock))
            .open_store(&BucketConfig::new("assignments", None))
            .expect("memory store");
        let old = AssignmentRecord {
            version: 3,
            epoch: 50,
            reason: RebalanceKind::ColdStart,
            instance: "i0".into(),
            incarnation: 0,
            partitions: vec![OwnedPartition {
                id: "p0".into(),
                weight: 1,
                token: 3,
            }],
            incoming: Vec::new(),
        };
        store.put("worker-0", &wire::encode(&old)).expect("put");
        let params = LeaderParams {
            id: "worker-0".into(),
            config: Config::default(),
            strategy: Arc::new(BoundedLoad::default()),
            refresh_every: None,
            buckets: ("workers".into(), "assignments".into()),
        };
        let mut node = LeaderNode::new(params, 2, t0);
        node.handle_lease(lease_valid.then(|| t0 + Duration::from_secs(3600)));
        node.handle_source(t0, Ok(vec![Partition::new("p0")]));
        node.handle_watch(t0, crate::store::WatchEvent::Synced);
        let (mut in_office, mut reported) = (false, false);
        let mut now = t0;
        for _ in 0..200 {
            now += Duration::from_millis(50);
            node.handle_timeout(now);
            while let Some(op) = node.poll_op(now) {
                let reply = op.perform(&store as &dyn KvStore);
                node.handle_reply(now, reply);
            }
            while let Some(effect) = node.poll_effect() {
                match effect {
                    LeaderEffect::InOffice => in_office = true,
                    LeaderEffect::Report(Error::Corrupt { key, .. }) => {
                        reported |= key == "worker-0"
                    }
                    _ => {}
                }
            }
        }
        let entry = store.get("worker-0").expect("get").expect("the key");
        let now: AssignmentRecord =
            wire::decode("assignments", "worker-0", &entry.value).expect("decodes");
        (in_office, reported, now)
    }

    #[test]
    fn an_epoch_no_lease_could_have_had_is_overwritten_and_reported() {
        let (in_office, reported, record) = take_office(true);
        assert!(in_office, "the new leader never took office");
        assert!(reported, "the impossible epoch was not reported");
        assert_eq!(record.epoch, 2, "the record was not re-stamped");
        assert_eq!((record.version, record.partitions.len()), (3, 1));
    }

    #[test]
    fn without_a_valid_lease_a_newer_epoch_still_stops_the_term() {
        let (in_office, _, record) = take_office(false);
        assert!(!in_office);
        assert_eq!(record.epoch, 50, "a leader without a lease wrote");
    }
}
