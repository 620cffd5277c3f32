//! The JSON records stored in the group's buckets, and their decoding.
//!
//! Decoding never panics: a value that does not parse is an
//! [`Error::Corrupt`] naming the bucket and key, and callers keep their last
//! good state.

use std::collections::{BTreeMap, BTreeSet};

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
    /// The highest assignment version this process was handed to install,
    /// its callback returned or not (at least `applied`). A leader that finds
    /// the store forgot numbers on above it, so no token it hands out is
    /// below one a callback may already have passed downstream. Absent in
    /// records of older versions: 0 (then `applied` is all there is).
    #[serde(default)]
    pub told: u64,
    /// Set when the worker is stopping gracefully.
    #[serde(default)]
    pub leaving: bool,
    /// Host name, for operators.
    #[serde(default)]
    pub host: String,
    /// Process id, for operators.
    #[serde(default)]
    pub pid: u32,
    /// Placement labels (e.g. `zone`), set with
    /// [`ManagerBuilder::label`](crate::ManagerBuilder::label); absent in
    /// records of older versions: no labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Relative placement weight, set with
    /// [`ManagerBuilder::capacity`](crate::ManagerBuilder::capacity);
    /// absent: 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub capacity: u32,
}

impl WorkerRecord {
    /// The first record of a process claiming an ID: nothing applied yet.
    pub fn starting(instance: &str, host: String, pid: u32) -> Self {
        WorkerRecord {
            instance: instance.to_string(),
            incarnation: 0,
            seq: 0,
            applied: 0,
            told: 0,
            leaving: false,
            host,
            pid,
            labels: BTreeMap::new(),
            capacity: 1,
        }
    }

    /// The same record carrying this worker's placement descriptor.
    pub fn described(mut self, labels: &BTreeMap<String, String>, capacity: u32) -> Self {
        self.labels = labels.clone();
        self.capacity = capacity;
        self
    }

    /// The worker as placement sees it.
    pub fn info(&self, id: &str) -> crate::strategy::WorkerInfo {
        let info = crate::strategy::WorkerInfo::new(id).capacity(self.capacity);
        self.labels
            .iter()
            .fold(info, |info, (k, v)| info.label(k.clone(), v.clone()))
    }
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
    /// Partition weight (left out when 1, to keep big records small).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub weight: u32,
    /// Fencing token: the version at which this owner was granted it.
    pub token: u64,
}

fn one() -> u32 {
    1
}

fn is_one(w: &u32) -> bool {
    *w == 1
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
    /// Partitions on their way to this worker, still held by their previous
    /// owner (revoke before grant): the worker's `on_prepare` hook is told
    /// of them. Absent in records of older versions: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incoming: Vec<String>,
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
    /// Partitions no live worker may own (no live worker carries their
    /// required labels): unowned until one joins, or until the spill grace
    /// (`Config::label_spill_grace`) lets any worker take them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parked: Vec<String>,
}

/// The key of [`ControlRecord`] in the assignments bucket (which keys never
/// expire from), and of the nudge written next to it in the workers bucket
/// (which the leader watches). Worker IDs never start with `_`.
pub const CONTROL_KEY: &str = "_control";

/// Operator requests for a group: the value of [`CONTROL_KEY`] in the
/// assignments bucket, written by `parti drain|undrain|rebalance` with a
/// compare-and-set and read by every leader when it takes office and
/// whenever the nudge in the workers bucket changes. Living in KV, a drain
/// outlasts any leader.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRecord {
    /// Workers that get no partitions: they keep running and heartbeating,
    /// their work moves to the others by revoke-before-grant.
    #[serde(default)]
    pub drained: BTreeSet<String>,
    /// Bumped by each `parti rebalance`: the leader that sees it grow
    /// rebalances at once (windows and cooldown skipped, handoffs kept).
    #[serde(default)]
    pub rebalance: u64,
}

/// The longest record the leader writes: the default `max_payload` of a
/// NATS server (1 MiB) less room for the headers of a compare-and-set. A
/// server closes the connection of a client that sends a longer message.
pub const MAX_RECORD_BYTES: usize = (1 << 20) - 4096;

/// [`Error::RecordTooLarge`] when `value`, to be written under `key` in
/// `bucket`, is longer than [`MAX_RECORD_BYTES`].
pub(crate) fn check_size(bucket: &str, key: &str, value: &[u8]) -> Result<(), Error> {
    if value.len() <= MAX_RECORD_BYTES {
        return Ok(());
    }
    Err(Error::RecordTooLarge {
        bucket: bucket.to_string(),
        key: key.to_string(),
        bytes: value.len(),
        limit: MAX_RECORD_BYTES,
    })
}

/// Serializes a record (infallible for these types).
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// The largest counter (version, epoch, token, sequence) a record may carry:
/// 2^53 - 1, the largest integer every JSON reader holds exactly. Counters
/// grow by one per write, so no group reaches it; a larger value was written
/// by something else and is treated as corrupt, which keeps `+ 1` on any
/// counter read from KV from overflowing.
pub const MAX_COUNTER: u64 = (1 << 53) - 1;

/// A record type stored in the group's buckets, with the checks a decoded
/// value must pass beyond its JSON shape.
pub trait Record: DeserializeOwned {
    /// Why this value cannot be right, if it cannot.
    fn implausible(&self) -> Option<String>;
}

fn counter(name: &str, value: u64) -> Option<String> {
    (value > MAX_COUNTER).then(|| format!("{name} {value} exceeds {MAX_COUNTER}"))
}

impl Record for WorkerRecord {
    fn implausible(&self) -> Option<String> {
        counter("seq", self.seq)
            .or_else(|| counter("applied", self.applied))
            .or_else(|| counter("told", self.told))
    }
}

impl Record for LeaderRecord {
    fn implausible(&self) -> Option<String> {
        counter("epoch", self.epoch)
    }
}

impl Record for AssignmentRecord {
    fn implausible(&self) -> Option<String> {
        counter("version", self.version)
            .or_else(|| counter("epoch", self.epoch))
            .or_else(|| {
                self.partitions
                    .iter()
                    .find_map(|p| counter(&format!("token of {}", p.id), p.token))
            })
    }
}

impl Record for MetaRecord {
    fn implausible(&self) -> Option<String> {
        counter("version", self.version).or_else(|| counter("epoch", self.epoch))
    }
}

impl Record for ControlRecord {
    fn implausible(&self) -> Option<String> {
        counter("rebalance", self.rebalance).or_else(|| {
            self.drained
                .iter()
                .find(|w| w.is_empty() || w.starts_with('_'))
                .map(|w| format!("{w:?} is not a worker ID"))
        })
    }
}

/// Parses a record found in `bucket` under `key`; a value that does not
/// parse, or carries a counter no group can reach ([`MAX_COUNTER`]), is an
/// [`Error::Corrupt`].
pub fn decode<T: Record>(bucket: &str, key: &str, bytes: &[u8]) -> Result<T, Error> {
    let corrupt = |reason: String| Error::Corrupt {
        bucket: bucket.to_string(),
        key: key.to_string(),
        reason,
    };
    let record: T = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    match record.implausible() {
        Some(reason) => Err(corrupt(reason)),
        None => Ok(record),
    }
}

/// Parses the lease found at `revision`. Its epoch is the revision of the
/// write that acquired it, so an epoch above the revision it is read at was
/// not written by a parti leader: trusting it would make every worker ignore
/// the real leaders' (lower) epochs for good.
pub fn decode_lease(
    bucket: &str,
    key: &str,
    bytes: &[u8],
    revision: u64,
) -> Result<LeaderRecord, Error> {
    let record: LeaderRecord = decode(bucket, key, bytes)?;
    if record.epoch > revision {
        return Err(Error::Corrupt {
            bucket: bucket.to_string(),
            key: key.to_string(),
            reason: format!(
                "epoch {} above the revision {revision} it was read at",
                record.epoch
            ),
        });
    }
    Ok(record)
}

/// The lease as a watcher or reader should take it: a value that cannot be
/// trusted ([`decode_lease`] fails) counts as held by nobody known, so it is
/// taken over once it has stood still for a lease TTL, and the error is
/// returned for reporting.
pub(crate) fn lease_or_nobody(
    bucket: &str,
    key: &str,
    bytes: &[u8],
    revision: u64,
) -> (LeaderRecord, Option<Error>) {
    match decode_lease(bucket, key, bytes, revision) {
        Ok(record) => (record, None),
        Err(e) => (
            LeaderRecord {
                worker: String::new(),
                instance: String::new(),
                epoch: 0,
            },
            Some(e),
        ),
    }
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
    fn counters_no_group_can_reach_are_corrupt() {
        let huge = format!(
            r#"{{"version":{},"epoch":1,"reason":"cold_start","instance":"i","incarnation":0,"partitions":[]}}"#,
            u64::MAX
        );
        let err = decode::<AssignmentRecord>("b", "k", huge.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { ref reason, .. } if reason.contains("version")));
        let ok = huge.replace(&u64::MAX.to_string(), &MAX_COUNTER.to_string());
        assert!(decode::<AssignmentRecord>("b", "k", ok.as_bytes()).is_ok());
    }

    #[test]
    fn worker_records_of_older_versions_have_no_labels_and_capacity_1() {
        let old = br#"{"instance":"i","incarnation":0,"seq":1,"applied":0}"#;
        let r: WorkerRecord = decode("b", "k", old).unwrap();
        assert!(r.labels.is_empty());
        assert_eq!(r.capacity, 1);
        assert_eq!(r.told, 0, "older versions report only what they applied");
        let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let described = r.clone().described(&labels, 3);
        let back: WorkerRecord = decode("b", "k", &encode(&described)).unwrap();
        assert_eq!(back, described);
        assert_eq!(back.info("w").capacity_value(), 3);
        assert!(back.info("w").has_label("zone", "a"));
        // An undescribed worker writes what older versions wrote.
        assert!(!String::from_utf8(encode(&r)).unwrap().contains("capacity"));
    }

    #[test]
    fn a_lease_epoch_above_its_revision_is_corrupt() {
        let rec = br#"{"worker":"w","instance":"i","epoch":1000}"#;
        assert!(decode_lease("leader", "leader", rec, 999).is_err());
        assert_eq!(
            decode_lease("leader", "leader", rec, 1000).unwrap().epoch,
            1000
        );
    }

    #[test]
    fn weight_one_is_left_out_and_read_back_as_one() {
        let p = OwnedPartition {
            id: "p".into(),
            weight: 1,
            token: 7,
        };
        assert_eq!(encode(&p), br#"{"id":"p","token":7}"#);
        let heavy = OwnedPartition {
            weight: 3,
            ..p.clone()
        };
        assert_eq!(decode_plain(&encode(&heavy)), heavy);
        assert_eq!(decode_plain(&encode(&p)), p);
    }

    fn decode_plain(bytes: &[u8]) -> OwnedPartition {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn an_oversized_record_is_a_typed_error() {
        assert!(check_size("b", "k", &vec![b' '; MAX_RECORD_BYTES]).is_ok());
        let err = check_size("b", "k", &vec![b' '; MAX_RECORD_BYTES + 1]).unwrap_err();
        assert!(
            matches!(err, Error::RecordTooLarge { bytes, .. } if bytes == MAX_RECORD_BYTES + 1),
            "{err}"
        );
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
            incoming: vec!["q".into()],
        };
        let back: AssignmentRecord = decode("b", "k", &encode(&r)).unwrap();
        assert_eq!(back, r);
    }
}
