//! The leader's ledger of what each worker may hold, and the
//! revoke-before-grant rule.
//!
//! A partition may be granted to a worker only when no other worker can still
//! be working on it: it is in nobody else's published assignment, and every
//! worker it was removed from has acknowledged (in its heartbeat) the version
//! that removed it. Partitions that do not move are never touched.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::wire::{AssignmentRecord, OwnedPartition};
use crate::{Partition, Placement};

/// The process incarnation an assignment is addressed to.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct Addressee {
    /// Process nonce.
    pub(crate) instance: String,
    /// Fencing incarnation of that process.
    pub(crate) incarnation: u32,
}

/// What may still be running on a worker besides its published partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Unreleased {
    /// Partition id -> version that removed it, not yet acknowledged.
    Known(BTreeMap<String, u64>),
    /// Adopted from a previous leader: the worker has not acknowledged its
    /// latest version, so it may hold anything nobody else was given.
    Unknown,
}

/// The leader's view of one worker's key.
#[derive(Clone, Debug)]
struct WorkerKey {
    addressee: Addressee,
    /// Version of the last write to this key.
    version: u64,
    /// Whether the key was written for the current addressee.
    written: bool,
    /// Published partitions with their tokens.
    partitions: BTreeMap<String, (Partition, u64)>,
    unreleased: Unreleased,
}

impl WorkerKey {
    fn empty(addressee: Addressee) -> Self {
        WorkerKey {
            addressee,
            version: 0,
            written: false,
            partitions: BTreeMap::new(),
            unreleased: Unreleased::Known(BTreeMap::new()),
        }
    }

    fn awaits_ack(&self) -> bool {
        match &self.unreleased {
            Unreleased::Known(ids) => !ids.is_empty(),
            Unreleased::Unknown => true,
        }
    }

    #[cfg(test)]
    fn may_hold(&self, id: &str) -> bool {
        self.partitions.contains_key(id)
            || match &self.unreleased {
                Unreleased::Known(ids) => ids.contains_key(id),
                Unreleased::Unknown => true,
            }
    }
}

/// One worker's record to write in a publication round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyWrite {
    /// Worker ID (the key).
    pub(crate) worker: String,
    /// Who it is addressed to.
    pub(crate) addressee: Addressee,
    /// Partitions with tokens.
    pub(crate) partitions: Vec<OwnedPartition>,
    /// How many partitions this write removes.
    pub(crate) revoked: usize,
    /// How many it grants.
    pub(crate) granted: usize,
}

/// The leader's bookkeeping of published assignments and releases.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    keys: BTreeMap<String, WorkerKey>,
}

impl Ledger {
    /// Takes over what a previous leader published. Workers that have not yet
    /// acknowledged their record's version count as possibly holding anything
    /// unowned, until they do.
    pub(crate) fn adopt(&mut self, worker: &str, record: &AssignmentRecord, acked: bool) {
        let partitions = record
            .partitions
            .iter()
            .map(|p| (p.id.clone(), (p.partition(), p.token)))
            .collect();
        self.keys.insert(
            worker.to_string(),
            WorkerKey {
                addressee: Addressee {
                    instance: record.instance.clone(),
                    incarnation: record.incarnation,
                },
                version: record.version,
                written: true,
                partitions,
                unreleased: if acked {
                    Unreleased::Known(BTreeMap::new())
                } else {
                    Unreleased::Unknown
                },
            },
        );
    }

    /// A heartbeat from `worker` as `addressee` that has applied `applied`.
    /// A new addressee (restarted process or new incarnation) holds nothing:
    /// its old key is void and it will be sent a fresh one.
    /// Returns whether anything changed (so a publication step may now do
    /// more than before).
    pub(crate) fn observe(&mut self, worker: &str, addressee: &Addressee, applied: u64) -> bool {
        let Some(key) = self.keys.get_mut(worker) else {
            return false;
        };
        if key.addressee != *addressee {
            *key = WorkerKey::empty(addressee.clone());
            return true;
        }
        match &mut key.unreleased {
            Unreleased::Known(ids) if ids.is_empty() => false,
            unreleased if applied >= key.version => {
                *unreleased = Unreleased::Known(BTreeMap::new());
                true
            }
            Unreleased::Known(ids) => {
                let before = ids.len();
                ids.retain(|_, removed_at| *removed_at > applied);
                ids.len() != before
            }
            Unreleased::Unknown => false,
        }
    }

    /// `worker` reports having applied `applied`, a version this ledger has
    /// no record of for it: the store lost writes (emptied or rolled back),
    /// so what the worker holds is unknown. Until it applies a version this
    /// leader writes to it, it counts as possibly holding every partition.
    /// Returns whether the worker was marked.
    pub(crate) fn suspect(&mut self, worker: &str, addressee: &Addressee, applied: u64) -> bool {
        if self.keys.get(worker).is_some_and(|k| k.version >= applied) {
            return false;
        }
        let mut key = WorkerKey::empty(addressee.clone());
        // Cleared by the first version written to it and then applied.
        key.version = u64::MAX;
        key.unreleased = Unreleased::Unknown;
        self.keys.insert(worker.to_string(), key);
        true
    }

    /// Whether `worker`'s published key lists partitions for a process
    /// other than `addressee`: a record nobody works on (the process
    /// restarted), which must be cleared before its partitions show under
    /// another worker.
    pub(crate) fn shows_void(&self, worker: &str, addressee: &Addressee) -> bool {
        self.keys
            .get(worker)
            .is_some_and(|k| k.addressee != *addressee && !k.partitions.is_empty())
    }

    /// The worker is dead or gone: nothing it held blocks anyone any more.
    /// Returns whether it had a key.
    pub(crate) fn forget(&mut self, worker: &str) -> bool {
        self.keys.remove(worker).is_some()
    }

    /// The published placement (workers with a key, their partitions).
    pub(crate) fn placement(&self) -> Placement {
        self.keys
            .iter()
            .map(|(w, k)| {
                (
                    w.clone(),
                    k.partitions.values().map(|(p, _)| p.clone()).collect(),
                )
            })
            .collect()
    }

    /// Partition ids in `target` that their worker's published key does not
    /// hold yet, by worker; workers with none are left out.
    pub(crate) fn missing_from(&self, target: &Placement) -> BTreeMap<String, Vec<String>> {
        target
            .iter()
            .filter_map(|(w, ps)| {
                let held = self.keys.get(w).map(|k| &k.partitions);
                let missing: Vec<String> = ps
                    .iter()
                    .filter(|p| !held.is_some_and(|h| h.contains_key(p.id())))
                    .map(|p| p.id().to_string())
                    .collect();
                (!missing.is_empty()).then(|| (w.clone(), missing))
            })
            .collect()
    }

    /// Published partition count per worker.
    pub(crate) fn counts(&self) -> BTreeMap<String, usize> {
        self.keys
            .iter()
            .map(|(w, k)| (w.clone(), k.partitions.len()))
            .collect()
    }

    /// Partition ids that are in somebody's published key.
    pub(crate) fn owned_ids(&self) -> BTreeSet<&str> {
        self.keys
            .values()
            .flat_map(|k| k.partitions.keys().map(String::as_str))
            .collect()
    }

    /// Workers whose acknowledgement is awaited before what they may hold
    /// can be given to others: removals not acknowledged, or a record
    /// adopted and not acknowledged.
    pub(crate) fn awaiting_ack(&self) -> impl Iterator<Item = &str> {
        self.keys
            .iter()
            .filter(|(_, k)| k.awaits_ack())
            .map(|(w, _)| w.as_str())
    }

    /// The version of `worker`'s key as last written or adopted (`None`:
    /// no key, or one whose worker may hold anything, see `suspect`).
    pub(crate) fn key_version(&self, worker: &str) -> Option<u64> {
        (self.keys.get(worker))
            .map(|k| k.version)
            .filter(|v| *v > 0 && *v != u64::MAX)
    }

    /// Whether `worker`'s acknowledgement is awaited (see `awaiting_ack`).
    pub(crate) fn awaits_ack(&self, worker: &str) -> bool {
        self.keys.get(worker).is_some_and(WorkerKey::awaits_ack)
    }

    /// Workers with removals not acknowledged since before `version`
    /// (for handoff-timeout reports).
    pub(crate) fn unreleased_since(&self, version: u64) -> Vec<String> {
        self.keys
            .iter()
            .filter(|(_, k)| match &k.unreleased {
                Unreleased::Known(ids) => ids.values().any(|v| *v <= version),
                Unreleased::Unknown => k.version <= version,
            })
            .map(|(w, _)| w.clone())
            .collect()
    }

    /// Moves the published state one step towards `target` at `version`:
    /// removals at once, grants only for partitions nobody else may hold.
    /// `addressees` gives the live workers to write to (workers in `target`
    /// must be among them). Returns the keys to write; empty when nothing
    /// changes. Workers never written before get a key even when empty, so
    /// they learn they are part of the group.
    pub(crate) fn step(
        &mut self,
        target: &Placement,
        addressees: &BTreeMap<String, Addressee>,
        version: u64,
    ) -> Vec<KeyWrite> {
        let empty = Vec::new();
        let mut writes = Vec::new();
        // Who may hold each partition, built once, when a grant is first
        // considered: asking every key about every granted partition was
        // O(partitions x workers) string compares (29-33 s for the cold
        // start of 1,000 workers x 100,000 partitions).
        let mut holders: Option<Holders> = None;
        for (worker, addressee) in addressees {
            let desired = target.get(worker).unwrap_or(&empty);
            let mut keep: BTreeMap<String, (Partition, u64)> = BTreeMap::new();
            let mut granted = 0;
            let current = self.keys.get(worker).filter(|k| k.addressee == *addressee);
            for p in desired {
                if let Some(kept) = current.and_then(|k| k.partitions.get(p.id())) {
                    keep.insert(p.id().to_string(), (p.clone(), kept.1));
                } else {
                    let h = holders.get_or_insert_with(|| Holders::of(&self.keys));
                    if h.free_for(worker, p.id()) {
                        keep.insert(p.id().to_string(), (p.clone(), version));
                        h.add(worker, p.id());
                        granted += 1;
                    }
                }
            }
            let (removed, was_written): (Vec<String>, bool) = match current {
                Some(k) => (
                    k.partitions
                        .keys()
                        .filter(|id| !keep.contains_key(*id))
                        .cloned()
                        .collect(),
                    k.written,
                ),
                None => (Vec::new(), false),
            };
            let in_target = target.contains_key(worker);
            // A suspect (see `suspect`) is cleared only by applying a
            // version written to it: it gets one even when it is to hold
            // nothing (drained, or more workers than partitions), or what
            // it may hold stays blocked for good.
            let suspect =
                current.is_some_and(|k| !k.written && k.unreleased == Unreleased::Unknown);
            if granted == 0 && removed.is_empty() && !suspect && (was_written || !in_target) {
                continue;
            }
            let key = self
                .keys
                .entry(worker.clone())
                .or_insert_with(|| WorkerKey::empty(addressee.clone()));
            if key.addressee != *addressee {
                // The old incarnation's key is void: it blocks nobody now.
                if let Some(h) = holders.as_mut() {
                    h.remove_all(worker, key);
                    for id in keep.keys() {
                        h.add(worker, id);
                    }
                }
                *key = WorkerKey::empty(addressee.clone());
            }
            if let Unreleased::Known(ids) = &mut key.unreleased {
                for id in &removed {
                    ids.insert(id.clone(), version);
                }
            }
            key.version = version;
            key.written = true;
            key.partitions = keep;
            writes.push(KeyWrite {
                worker: worker.clone(),
                addressee: addressee.clone(),
                partitions: owned(&key.partitions),
                revoked: removed.len(),
                granted,
            });
        }
        writes
    }

    /// The worker's key as published, written again unchanged at `version`
    /// (to tell it something beside its partitions); `None` without a key.
    pub(crate) fn rewrite(&mut self, worker: &str, version: u64) -> Option<KeyWrite> {
        let key = self.keys.get_mut(worker)?;
        key.version = version;
        Some(KeyWrite {
            worker: worker.to_string(),
            addressee: key.addressee.clone(),
            partitions: owned(&key.partitions),
            revoked: 0,
            granted: 0,
        })
    }
}

/// Which workers may hold each partition (published to them, or removed and
/// not acknowledged), and which may hold anything (adopted, unacknowledged):
/// what [`WorkerKey::may_hold`] says, indexed by partition.
struct Holders {
    by_id: HashMap<String, Vec<String>>,
    anything: Vec<String>,
}

impl Holders {
    fn of(keys: &BTreeMap<String, WorkerKey>) -> Self {
        let mut h = Holders {
            by_id: HashMap::new(),
            anything: Vec::new(),
        };
        for (w, k) in keys {
            for id in k.partitions.keys() {
                h.add(w, id);
            }
            match &k.unreleased {
                Unreleased::Known(ids) => {
                    for id in ids.keys() {
                        h.add(w, id);
                    }
                }
                Unreleased::Unknown => h.anything.push(w.clone()),
            }
        }
        h
    }

    fn add(&mut self, worker: &str, id: &str) {
        let ws = self.by_id.entry(id.to_string()).or_default();
        if !ws.iter().any(|w| w == worker) {
            ws.push(worker.to_string());
        }
    }

    fn remove_all(&mut self, worker: &str, key: &WorkerKey) {
        let mut drop_from = |id: &str| {
            if let Some(ws) = self.by_id.get_mut(id) {
                ws.retain(|w| w != worker);
            }
        };
        for id in key.partitions.keys() {
            drop_from(id);
        }
        if let Unreleased::Known(ids) = &key.unreleased {
            for id in ids.keys() {
                drop_from(id);
            }
        }
        self.anything.retain(|w| w != worker);
    }

    /// Nobody but `worker` may hold `id`.
    fn free_for(&self, worker: &str, id: &str) -> bool {
        self.anything.iter().all(|w| w == worker)
            && self
                .by_id
                .get(id)
                .is_none_or(|ws| ws.iter().all(|w| w == worker))
    }
}

fn owned(partitions: &BTreeMap<String, (Partition, u64)>) -> Vec<OwnedPartition> {
    partitions
        .values()
        .map(|(p, token)| OwnedPartition {
            id: p.id().to_string(),
            weight: p.weight(),
            token: *token,
        })
        .collect()
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
