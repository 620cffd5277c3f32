//! The JSON records stored in the group's buckets, and their decoding.
//!
//! Decoding never panics: a value that does not parse is an
//! [`Error::Corrupt`] naming the bucket and key, and callers keep their last
//! good state.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Error, Partition, RebalanceKind};

/// A worker's registration and heartbeat: the value of its key in the workers
/// bucket, rewritten (compare-and-set) every heartbeat interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Random per-process nonce: tells a restarted process from the old one.
    pub instance: String,
    /// Bumped every time this process fences itself; assignments addressed to
    /// an older incarnation are ignored.
    pub incarnation: u32,
    /// Heartbeat counter of this process.
    pub seq: u64,
    /// The assignment version this (instance, incarnation) has applied: its
    /// `on_assignment_changed` for that version has returned.
    pub applied: u64,
    /// Set when the worker is stopping gracefully.
    #[serde(default)]
    pub leaving: bool,
    /// Host name, for operators.
    #[serde(default)]
    pub host: String,
    /// Process id, for operators.
    #[serde(default)]
    pub pid: u32,
}

/// The leader lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    /// The leader's worker ID.
    pub worker: String,
    /// The leader's process nonce.
    pub instance: String,
    /// The leader epoch; 0 in the acquiring write itself, whose revision is
    /// the epoch.
    #[serde(default)]
    pub epoch: u64,
}

impl LeaderRecord {
    /// The epoch this record stands for, given the revision it was read at.
    pub fn effective_epoch(&self, revision: u64) -> u64 {
        if self.epoch == 0 {
            revision
        } else {
            self.epoch
        }
    }
}

/// One partition in an assignment, with its fencing token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedPartition {
    /// Partition id.
    pub id: String,
    /// Partition weight.
    #[serde(default = "one")]
    pub weight: u32,
    /// Fencing token: the version at which this owner was granted it.
    pub token: u64,
}

fn one() -> u32 {
    1
}

impl OwnedPartition {
    /// The partition, without its token.
    pub fn partition(&self) -> Partition {
        Partition::with_weight(self.id.clone(), self.weight)
    }
}

/// A worker's assignment: the value of its key in the assignments bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRecord {
    /// Global assignment version (strictly increasing across leaders).
    pub version: u64,
    /// Epoch of the leader that wrote it.
    pub epoch: u64,
    /// Why it was written.
    pub reason: RebalanceKind,
    /// The process this is addressed to.
    pub instance: String,
    /// The incarnation of that process this is addressed to.
    pub incarnation: u32,
    /// The partitions, with fencing tokens.
    pub partitions: Vec<OwnedPartition>,
}

/// The group summary under the `_meta` key, for tools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRecord {
    /// Latest version.
    pub version: u64,
    /// Leader epoch.
    pub epoch: u64,
    /// Why the latest version was published.
    pub reason: RebalanceKind,
    /// The leader's worker ID.
    pub leader: String,
    /// Partition count per worker in the latest published state.
    pub workers: BTreeMap<String, usize>,
    /// Partitions in the source.
    pub partitions: usize,
    /// Partitions currently owned by nobody (waiting for a window or a
    /// handoff).
    pub unassigned: usize,
    /// Recently departed workers and the partitions they held, so that a
    /// process returning under the same ID gets them back even across a
    /// leader change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub departed: BTreeMap<String, Vec<String>>,
    /// Partitions on their way to a worker (revoked or being revoked from
    /// their holder, not yet granted), so that a new leader finishes the
    /// handoff instead of undoing it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub moving: BTreeMap<String, Vec<String>>,
}

/// Serializes a record (infallible for these types).
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// Parses a record found in `bucket` under `key`.
pub fn decode<T: DeserializeOwned>(bucket: &str, key: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        bucket: bucket.to_string(),
        key: key.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_values_are_typed_errors() {
        let err = decode::<WorkerRecord>("b", "k", b"{not json").unwrap_err();
        assert!(matches!(err, Error::Corrupt { ref key, .. } if key == "k"));
        let err = decode::<AssignmentRecord>("b", "k", br#"{"version":"x"}"#).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }));
    }

    #[test]
    fn records_round_trip() {
        let r = AssignmentRecord {
            version: 3,
            epoch: 9,
            reason: RebalanceKind::Emergency,
            instance: "i".into(),
            incarnation: 2,
            partitions: vec![OwnedPartition {
                id: "p".into(),
                weight: 1,
                token: 3,
            }],
        };
        let back: AssignmentRecord = decode("b", "k", &encode(&r)).unwrap();
        assert_eq!(back, r);
    }
}
