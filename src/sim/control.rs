//! What users and operators do to a running group, beside starting and
//! stopping processes: `parti drain|undrain|rebalance` (the CLI's writes,
//! made by a third-party client: the [`ControlRecord`] changed by
//! compare-and-set in the assignments bucket, then the nudge under the
//! same key in the workers bucket), and `Manager::refresh_partitions` as
//! the manager does it (the leader's own input when the caller leads, the
//! `_refresh` key in the workers bucket otherwise).
//!
//! The world checks what a drain promises: once the group stayed calm for
//! [`SimConfig::handoff_bound`](super::SimConfig::handoff_bound) after a
//! drain, the drained worker owns nothing for as long as it stays drained
//! (whatever happens meanwhile: leader changes, restarts under its ID);
//! after an undrain, calm for that bound, it owns something again when
//! there is enough work to go round.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use crate::core::leader::LeaderInput;
use crate::core::ops::Bucket;
use crate::names::REFRESH_KEY;
use crate::store::{BucketConfig, KvBackend, KvStore};
use crate::wire::{self, ControlRecord, CONTROL_KEY};

use super::world::World;

/// A drain or undrain whose promise is awaited.
pub(crate) struct DrainWatch {
    pub id: String,
    pub drained: bool,
    pub since: Instant,
    /// The disturbing faults injected before it.
    pub calm: Option<u64>,
    /// Checked once calm: from then on a drained worker must stay empty.
    pub checked: bool,
    /// Leader terms started before it: a new leader first settles (a
    /// heartbeat TTL and more) before any operator request is acted on.
    pub terms: u64,
}

impl World<'_> {
    /// `bucket` as a third party's client (never faulty) sees it.
    pub(crate) fn third_party(&self, bucket: Bucket) -> Option<Arc<dyn KvStore>> {
        let c = &self.env.config;
        let (name, age) = match bucket {
            Bucket::Workers => (&self.names.workers, Some(c.worker_id_ttl)),
            Bucket::Leader => (&self.names.leader, Some(c.election_ttl)),
            Bucket::Assignments => (&self.names.assignments, None),
        };
        self.backend.open(&BucketConfig::new(name, age)).ok()
    }

    /// `parti drain|undrain|rebalance`, drawn at random: an undrain when
    /// somebody is drained (half the time), a rebalance request (one time in
    /// eight), else a drain of a running worker while at least two others
    /// stay undrained.
    pub(crate) fn operator(&mut self, now: Instant) {
        let drained: Vec<String> = self.drained.iter().cloned().collect();
        if !drained.is_empty() && self.rng.chance(0.5) {
            let id = drained[self.rng.index(drained.len())].clone();
            self.control(now, &id, false);
            return;
        }
        if self.rng.chance(0.125) {
            if self.control_write(|r| r.rebalance += 1).is_ok() {
                self.note("OPERATOR rebalance".into());
            }
            return;
        }
        let ids: Vec<String> = self
            .procs
            .iter()
            .filter_map(|p| p.running())
            .filter(|r| r.leaving.is_none() && !self.drained.contains(&r.id))
            .map(|r| r.id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if ids.len() > 2 {
            let id = ids[self.rng.index(ids.len())].clone();
            self.control(now, &id, true);
        }
    }

    /// Drains (`drain`) or undrains worker `id`, and awaits the promise.
    pub(crate) fn control(&mut self, now: Instant, id: &str, drain: bool) {
        let written = self.control_write(|r| {
            if drain {
                r.drained.insert(id.to_string());
            } else {
                r.drained.remove(id);
            }
        });
        let verb = if drain { "drain" } else { "undrain" };
        if let Err(e) = written {
            self.note(format!("OPERATOR {verb} {id} failed: {e}"));
            return;
        }
        self.note(format!("OPERATOR {verb} {id}"));
        if drain {
            self.drained.insert(id.to_string());
        } else {
            self.drained.remove(id);
        }
        self.drains.retain(|w| w.id != id);
        self.drains.push(DrainWatch {
            id: id.to_string(),
            drained: drain,
            since: now,
            calm: self.calm(),
            checked: false,
            terms: self.report.terms,
        });
    }

    /// When the faults stop: each drained worker undrained or not, at
    /// random, once the group has settled (so that the promise is checked);
    /// all of them at once if nobody else would be left to take the work.
    pub(crate) fn end_operations(&mut self, now: Instant) {
        let drained: Vec<String> = self.drained.iter().cloned().collect();
        for id in drained {
            if self.rng.chance(0.5) {
                self.undrain_later.push(id);
            }
        }
        let takers = self
            .procs
            .iter()
            .filter_map(|p| p.running())
            .any(|r| r.leaving.is_none() && !self.drained.contains(&r.id));
        if !takers {
            for id in self.drained.clone() {
                self.control(now, &id, false);
            }
        }
    }

    /// Once the group settled after the faults: the undrains decided then,
    /// and (with the preset's kinds) one graceful leave and one drain of
    /// processes that do not lead, so
    /// that every run checks those promises from a calm group.
    fn tail_actions(&mut self, now: Instant) {
        self.tail_done = true;
        for id in std::mem::take(&mut self.undrain_later) {
            self.control(now, &id, false);
        }
        let kinds = self.sim.ops_kinds;
        let live = |w: &World<'_>| -> Vec<usize> {
            (0..w.procs.len())
                .filter(|i| {
                    (w.procs[*i].running()).is_some_and(|r| {
                        r.leaving.is_none() && r.leader.is_none() && !w.drained.contains(&r.id)
                    })
                })
                .collect()
        };
        if kinds.contains(&super::LEAVE) {
            let candidates = live(self);
            if candidates.len() > 2 {
                let i = candidates[self.rng.index(candidates.len())];
                self.leave(i, now);
            }
        }
        if kinds.contains(&super::CONTROL) {
            let candidates = live(self);
            if candidates.len() > 2 {
                let i = candidates[self.rng.index(candidates.len())];
                if let Some(id) = self.procs[i].running().map(|r| r.id.clone()) {
                    self.control(now, &id, true);
                }
            }
        }
    }

    /// The CLI's write: read, change, compare-and-set, nudge the leader.
    fn control_write(&mut self, change: impl FnOnce(&mut ControlRecord)) -> Result<(), String> {
        let (Some(assignments), Some(workers)) = (
            self.third_party(Bucket::Assignments),
            self.third_party(Bucket::Workers),
        ) else {
            return Err("cannot open the buckets".into());
        };
        let entry = assignments.get(CONTROL_KEY).map_err(|e| e.to_string())?;
        let mut record = match &entry {
            Some(e) => wire::decode::<ControlRecord>("assignments", CONTROL_KEY, &e.value)
                .map_err(|e| e.to_string())?,
            None => ControlRecord::default(),
        };
        change(&mut record);
        let value = wire::encode(&record);
        let revision = match &entry {
            Some(e) => assignments.update(CONTROL_KEY, &value, e.revision),
            None => assignments.create(CONTROL_KEY, &value),
        }
        .map_err(|e| e.to_string())?;
        workers
            .put(CONTROL_KEY, revision.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// `Manager::refresh_partitions` called on a process that is not frozen
    /// (a frozen process's caller is frozen too); `refresh_pending` when
    /// there is none.
    pub(crate) fn refresh_somewhere(&mut self) {
        let awake: Vec<usize> = (0..self.procs.len())
            .filter(|i| self.procs[*i].paused_until.is_none())
            .collect();
        if awake.is_empty() {
            self.refresh_pending = true;
            return;
        }
        let i = awake[self.rng.index(awake.len())];
        self.refresh_partitions(i);
    }

    /// `Manager::refresh_partitions` called on process `index`: it writes
    /// the `_refresh` key with its own client and, if it leads, tells its
    /// leader term too; a failed write is tried again (the caller got an
    /// error) from another process at the next step.
    pub(crate) fn refresh_partitions(&mut self, index: usize) {
        let p = &mut self.procs[index];
        let Some(r) = p.running_mut() else {
            self.refresh_pending = true;
            return;
        };
        if let Some(leader) = r.leader.as_mut() {
            leader.push(LeaderInput::Refresh);
        }
        let written =
            p.io.stores
                .workers
                .put(REFRESH_KEY, format!("{:016x}", p.rng.next_u64()).as_bytes());
        self.refresh_pending = written.is_err();
    }

    /// Each step: a failed refresh tried again; the drain promises.
    pub(crate) fn check_drains(&mut self, now: Instant) -> Result<(), String> {
        let ops = self.sim.ops_share > 0.0;
        if ops && self.faults_over && !self.tail_done && self.calm().is_some() {
            self.tail_actions(now);
        }
        if self.refresh_pending {
            self.refresh_somewhere();
        }
        let bound = self.sim.handoff_bound();
        let (disturbances, terms) = (Some(self.disturbances), self.report.terms);
        let mut result = Ok(());
        for w in &mut self.drains {
            let due = w.calm == disturbances && w.terms == terms && now >= w.since + bound;
            if !(w.checked || due) {
                continue;
            }
            let holders: Vec<usize> = self
                .procs
                .iter()
                .filter_map(|p| p.counted())
                .filter(|r| r.id == w.id && r.leaving.is_none())
                .map(|r| r.owned().count())
                .collect();
            if w.drained {
                if !w.checked {
                    self.report.drains_checked += 1;
                    w.checked = true;
                }
                if holders.iter().any(|n| *n > 0) && result.is_ok() {
                    result = Err(format!(
                        "{} drained at {:?} still owns partitions",
                        w.id,
                        w.since - self.t0
                    ));
                }
                continue;
            }
            w.checked = true;
            let takers = self
                .procs
                .iter()
                .filter_map(|p| p.running())
                .filter(|r| r.leaving.is_none() && !self.drained.contains(&r.id))
                .count();
            if holders.is_empty() || self.env.partitions.len() < takers {
                continue;
            }
            self.report.undrains_checked += 1;
            if holders.iter().all(|n| *n == 0) && result.is_ok() {
                result = Err(format!(
                    "{} undrained at {:?} got no work again {bound:?} later",
                    w.id,
                    w.since - self.t0
                ));
            }
        }
        self.drains.retain(|w| w.drained || !w.checked);
        result
    }
}
