//! Values no parti process wrote, put into the buckets by a third party
//! with write access: garbage that is not JSON, a worker record that does
//! not parse, a lease whose epoch is far above its revision (or above
//! `MAX_COUNTER`), an assignment record with `version: u64::MAX`. The nodes
//! must report each as the runtime does (`Report` effects, what `on_error`
//! gets) and the group keep assigning.
//!
//! The world checks that every corrupt value written is reported by some
//! process (the `Corrupt` error naming its bucket and key) within
//! [`SimConfig::bound`](super::SimConfig::bound); invariant 4 (every
//! partition owned once the faults stop) covers the rest.

use std::time::Instant;

use crate::core::ops::Bucket;
use crate::names::LEADER_KEY;
use crate::wire::{self, AssignmentRecord, LeaderRecord, WorkerRecord};

use super::world::World;

/// A corrupt value awaiting its report.
pub(crate) struct CorruptWatch {
    /// What the report must contain.
    pub needle: String,
    pub since: Instant,
    bucket: Bucket,
    key: String,
    value: Vec<u8>,
}

impl World<'_> {
    /// Writes one corrupt value; whether it disturbs the group (overwrites
    /// a key a process relies on).
    pub(crate) fn corrupt(&mut self, now: Instant) -> bool {
        let running: Vec<String> = self
            .procs
            .iter()
            .filter_map(|p| p.running())
            .map(|r| r.id.clone())
            .collect();
        let kind = self.rng.below(4);
        let (bucket, key, value, what) = match kind {
            // Under a key nobody holds: only the leader's watch sees it.
            0 => {
                let key = format!("worker-{}", 900 + self.rng.below(90));
                let value = if self.rng.chance(0.5) {
                    b"{\"instance\": \"x\", \"seq\": ".to_vec()
                } else {
                    let mut record = WorkerRecord::starting("intruder", String::new(), 0);
                    record.seq = u64::MAX;
                    wire::encode(&record)
                };
                (
                    Bucket::Workers,
                    key,
                    value,
                    "a worker record that does not parse",
                )
            }
            1 => {
                let epoch = if self.rng.chance(0.5) {
                    1 << 40
                } else {
                    u64::MAX
                };
                let record = LeaderRecord {
                    worker: "intruder".into(),
                    instance: "intruder".into(),
                    epoch,
                };
                let value = wire::encode(&record);
                (
                    Bucket::Leader,
                    LEADER_KEY.to_string(),
                    value,
                    "a lease with a huge epoch",
                )
            }
            _ if running.is_empty() => return false,
            k => {
                let id = running[self.rng.index(running.len())].clone();
                let value = match (k, self.assignment_of(&id)) {
                    (2, Some(mut record)) => {
                        record.version = u64::MAX;
                        wire::encode(&record)
                    }
                    _ => b"not json at all".to_vec(),
                };
                (Bucket::Assignments, id, value, "an assignment record")
            }
        };
        let Some(store) = self.third_party(bucket) else {
            return false;
        };
        if store.put(&key, &value).is_err() {
            return false;
        }
        // A value written over an unreported one supersedes it.
        self.corrupt.retain(|w| w.bucket != bucket || w.key != key);
        let short = match bucket {
            Bucket::Workers => "workers",
            Bucket::Leader => "leader",
            Bucket::Assignments => "assignments",
        };
        self.note(format!(
            "CORRUPT {short}/{key}: {what} ({})",
            String::from_utf8_lossy(&value)
                .chars()
                .take(60)
                .collect::<String>()
        ));
        self.report.corrupt_writes += 1;
        self.corrupt.push(CorruptWatch {
            needle: format!("corrupt value in bucket {short} key {key}:"),
            since: now,
            bucket,
            key,
            value,
        });
        kind != 0
    }

    fn assignment_of(&self, id: &str) -> Option<AssignmentRecord> {
        let entry = self.third_party(Bucket::Assignments)?.get(id).ok()??;
        wire::decode("assignments", id, &entry.value).ok()
    }

    /// A report a node made: it may be the one a corrupt value awaits.
    pub(crate) fn corrupt_reported(&mut self, report: &str) {
        let before = self.corrupt.len();
        self.corrupt.retain(|w| !report.contains(&w.needle));
        self.report.corrupt_reported += (before - self.corrupt.len()) as u64;
    }

    /// Every corrupt value still in the store reported within the bound. One
    /// gone before any process read it (a dead worker's key cleared without
    /// reading it, an expired lease nobody could see, a key deleted and then
    /// written again) is counted, not required: what replaces a value read
    /// first is tested in `core::leader` (a corrupt record found before
    /// writing is reported).
    pub(crate) fn check_corrupt(&mut self, now: Instant) -> Result<(), String> {
        let bound = self.sim.bound();
        let mut result = Ok(());
        for w in std::mem::take(&mut self.corrupt) {
            let still = (self.third_party(w.bucket)).is_some_and(|s| {
                s.get(&w.key)
                    .is_ok_and(|e| e.is_some_and(|e| e.value == w.value))
            });
            if !still {
                self.report.corrupt_gone_unread += 1;
            } else if now < w.since + bound {
                self.corrupt.push(w);
            } else if result.is_ok() {
                result = Err(format!(
                    "a corrupt value written at {:?} was not reported within {bound:?} ({})",
                    w.since - self.t0,
                    w.needle
                ));
            }
        }
        result
    }
}
