//! Fenced assignment writes.
//!
//! Every write of the leader is a compare-and-set against the revision it
//! last wrote or read, and a new leader re-stamps every existing key with its
//! own epoch before it decides anything. A write that a deposed leader still
//! has in flight then fails its revision check instead of landing over the
//! new leader's view; reading a key stamped with a newer epoch tells the
//! writer it was deposed.
//!
//! This module only decides; the leader thread and the simulation carry the
//! steps out against a store.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::store::Revision;
use crate::wire::{AssignmentRecord, MetaRecord};

/// How to write a key next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The key is known to be absent: put-if-absent.
    Create,
    /// The key is known at this revision: compare-and-set.
    Update(Revision),
    /// The key's revision is unknown (a write failed or timed out): read it
    /// first and pass what was found to [`Fence::read`].
    Read,
}

/// What to do after reading a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The key already holds the value (an earlier write landed although its
    /// answer was lost).
    Done,
    /// The revision is known now: write (see [`Fence::step`]).
    Write,
    /// A leader with this newer epoch wrote the key: stop writing.
    Deposed {
        /// The epoch found in the key.
        epoch: u64,
    },
}

/// What one leader knows of the revisions of the keys it writes.
#[derive(Debug)]
pub(crate) struct Fence {
    epoch: u64,
    /// `Some(rev)`: the key is at `rev`; `None`: the key is absent. Keys not
    /// in the map are unknown.
    known: BTreeMap<String, Option<Revision>>,
}

impl Fence {
    /// A fence for a leader of `epoch` that knows nothing yet.
    pub(crate) fn new(epoch: u64) -> Self {
        Fence {
            epoch,
            known: BTreeMap::new(),
        }
    }

    /// Writes from now on carry `epoch` (raised above one the lease bucket
    /// forgot); what is known of the keys stays.
    pub(crate) fn raise_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// An adopted record as a new leader re-writes it: the same, under this
    /// fence's epoch; `None` if a newer leader wrote it.
    pub(crate) fn restamped(&self, record: &AssignmentRecord) -> Option<AssignmentRecord> {
        (record.epoch <= self.epoch).then(|| AssignmentRecord {
            epoch: self.epoch,
            ..record.clone()
        })
    }

    /// The adopted summary as new leader `leader` re-writes it.
    pub(crate) fn restamped_meta(&self, meta: &MetaRecord, leader: &str) -> MetaRecord {
        MetaRecord {
            epoch: meta.epoch.max(self.epoch),
            leader: leader.to_string(),
            ..meta.clone()
        }
    }

    /// Learns a key's revision from a read (`None`: absent).
    pub(crate) fn learn(&mut self, key: &str, revision: Option<Revision>) {
        self.known.insert(key.to_string(), revision);
    }

    /// How to write `key` next.
    pub(crate) fn step(&self, key: &str) -> Step {
        match self.known.get(key) {
            Some(Some(rev)) => Step::Update(*rev),
            Some(None) => Step::Create,
            None => Step::Read,
        }
    }

    /// The result of reading `key` (value and revision, `None` if absent)
    /// before writing `value` to it.
    pub(crate) fn read(
        &mut self,
        key: &str,
        found: Option<(&[u8], Revision)>,
        value: &[u8],
    ) -> Verdict {
        let Some((current, revision)) = found else {
            self.learn(key, None);
            return Verdict::Write;
        };
        if let Some(epoch) = epoch_of(current).filter(|e| *e > self.epoch) {
            return Verdict::Deposed { epoch };
        }
        self.learn(key, Some(revision));
        if current == value {
            Verdict::Done
        } else {
            Verdict::Write
        }
    }

    /// The answer to a write of `key`: its new revision, or `None` when it
    /// failed (the key's state is then unknown until read again).
    pub(crate) fn written(&mut self, key: &str, revision: Option<Revision>) {
        match revision {
            Some(rev) => self.learn(key, Some(rev)),
            None => {
                self.known.remove(key);
            }
        }
    }

    /// The revision a delete of `key` should expect, if known.
    pub(crate) fn expected_for_delete(&self, key: &str) -> Option<Revision> {
        self.known.get(key).copied().flatten()
    }

    /// The answer to a delete of `key`.
    pub(crate) fn deleted(&mut self, key: &str, ok: bool) {
        if ok {
            self.learn(key, None);
        } else {
            self.known.remove(key);
        }
    }
}

/// The `epoch` field of an assignment or summary record, if it has one.
pub(crate) fn epoch_of(bytes: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Epoch {
        epoch: u64,
    }
    serde_json::from_slice::<Epoch>(bytes).ok().map(|e| e.epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u64, version: u64) -> Vec<u8> {
        format!(r#"{{"version":{version},"epoch":{epoch},"partitions":[]}}"#).into_bytes()
    }

    #[test]
    fn known_keys_are_compared_and_set_unknown_ones_read_first() {
        let mut f = Fence::new(3);
        assert_eq!(f.step("w1"), Step::Read);
        f.learn("w1", Some(7));
        f.learn("w2", None);
        assert_eq!(f.step("w1"), Step::Update(7));
        assert_eq!(f.step("w2"), Step::Create);
        f.written("w1", Some(9));
        assert_eq!(f.step("w1"), Step::Update(9));
        f.written("w1", None);
        assert_eq!(f.step("w1"), Step::Read, "a failed write forgets");
    }

    #[test]
    fn reading_a_newer_epoch_means_deposed() {
        let mut f = Fence::new(3);
        let mine = record(3, 10);
        assert_eq!(
            f.read("w1", Some((&record(4, 11), 5)), &mine),
            Verdict::Deposed { epoch: 4 }
        );
        assert_eq!(f.step("w1"), Step::Read, "nothing learned when deposed");
        assert_eq!(f.read("w1", Some((&mine, 6)), &mine), Verdict::Done);
        assert_eq!(f.step("w1"), Step::Update(6));
        assert_eq!(
            f.read("w1", Some((&record(2, 9), 6)), &mine),
            Verdict::Write
        );
        assert_eq!(f.read("w2", None, &mine), Verdict::Write);
        assert_eq!(f.step("w2"), Step::Create);
    }

    #[test]
    fn deletes_expect_the_known_revision() {
        let mut f = Fence::new(1);
        assert_eq!(f.expected_for_delete("w1"), None);
        f.learn("w1", Some(4));
        assert_eq!(f.expected_for_delete("w1"), Some(4));
        f.deleted("w1", true);
        assert_eq!(f.step("w1"), Step::Create);
        f.learn("w1", Some(5));
        f.deleted("w1", false);
        assert_eq!(f.step("w1"), Step::Read);
    }
}
