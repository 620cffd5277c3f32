//! A new leader's takeover: the records and summary a previous leader
//! published are adopted, so that a stable group is not reshuffled and
//! handoffs under way are finished.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::{Calculator, Member};
use crate::core::ledger::Addressee;
use crate::strategy::WorkerInfo;
use crate::wire::{AssignmentRecord, MetaRecord};
use crate::RebalanceKind;

impl Calculator {
    /// Takes over the assignments a previous leader published, before the
    /// first [`tick`](Self::tick). Their workers count as alive from `now`
    /// until their heartbeats say otherwise (a new leader has not seen them
    /// yet), so a stable group is not reshuffled.
    pub(crate) fn adopt(
        &mut self,
        now: Instant,
        records: &BTreeMap<String, AssignmentRecord>,
        meta_version: u64,
    ) {
        self.version = self.version.max(meta_version);
        self.adopted = true;
        for (worker, record) in records {
            self.version = self.version.max(record.version);
            self.ledger.adopt(worker, record, false);
            self.members
                .entry(worker.clone())
                .or_insert_with(|| Member {
                    addressee: Addressee {
                        instance: record.instance.clone(),
                        incarnation: record.incarnation,
                    },
                    applied: 0,
                    told: 0,
                    leaving: false,
                    heard: false,
                    last_seen: now,
                    joined: now,
                    established: true,
                    info: WorkerInfo::new(worker.clone()),
                });
            if let Some(m) = self.members.get_mut(worker) {
                m.established = m.addressee.instance == record.instance
                    && m.addressee.incarnation == record.incarnation;
            }
            if let Some(m) = self.members.get(worker) {
                let addressee = m.addressee.clone();
                let applied = m.applied;
                self.clear_if_void(worker, &addressee);
                self.ledger.observe(worker, &addressee, applied);
            }
        }
        let heard: Vec<(String, Addressee, u64)> = self
            .members
            .iter()
            .filter(|(_, m)| m.heard)
            .map(|(w, m)| (w.clone(), m.addressee.clone(), m.told.max(m.applied)))
            .collect();
        for (worker, addressee, applied) in heard {
            self.check_applied(now, &worker, &addressee, applied);
        }
        if !records.is_empty() {
            // Half an interval past the death verdict, so that deaths are
            // known before any planned window may close.
            let settle = self.config.heartbeat_ttl
                + self.config.emergency_grace
                + self.config.heartbeat_interval / 2;
            self.settle_until = Some(now + settle);
            let placement = self.ledger.placement();
            let placed: BTreeSet<&str> = placement.values().flatten().map(|p| p.id()).collect();
            let wanted: BTreeSet<&str> = self.partitions.iter().map(|p| p.id()).collect();
            if placed != wanted {
                self.pending_reason = Some(RebalanceKind::Takeover);
                self.partitions_dirty = true;
            }
            self.target = Some(placement);
            self.last_reason = RebalanceKind::Takeover;
        }
    }

    /// Called once the workers bucket's replay is complete: a worker that
    /// has a drained (empty) assignment key but no heartbeat key left after
    /// releasing everything, or stopped heartbeating a TTL ago and fenced
    /// itself. Either way nothing it might hold blocks anyone, so it is
    /// forgotten now instead of at a death verdict a TTL from now.
    pub(crate) fn forget_unheard(&mut self) {
        let placement = self.ledger.placement();
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(w, m)| !m.heard && placement.get(*w).is_none_or(|ps| ps.is_empty()))
            .map(|(w, _)| w.clone())
            .collect();
        for w in gone {
            self.worker_gone(&w);
        }
    }

    /// Takes over the previous leader's summary: what recently departed
    /// workers held (remembered as if they had departed at `now`) and the
    /// handoffs it had under way, which this leader finishes.
    pub(crate) fn adopt_meta(&mut self, now: Instant, meta: &MetaRecord) {
        for (w, ids) in &meta.departed {
            // A departed worker's drained key may still be there, empty; only
            // a worker already holding work again has no use for the memory.
            if self
                .target
                .as_ref()
                .is_none_or(|t| t.get(w).is_none_or(|ps| ps.is_empty()))
            {
                self.affinity.insert(w.clone(), (ids.clone(), now));
            }
        }
        let Some(target) = &mut self.target else {
            return;
        };
        for (w, ids) in &meta.moving {
            if !target.contains_key(w) {
                continue;
            }
            for id in ids {
                let Some(p) = self.partitions.iter().find(|p| p.id() == id) else {
                    continue;
                };
                for ps in target.values_mut() {
                    ps.retain(|q| q.id() != id);
                }
                if let Some(ps) = target.get_mut(w) {
                    ps.push(p.clone());
                }
                self.dirty = true;
            }
        }
    }
}
