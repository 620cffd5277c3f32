//! Placement and publication: calling the strategy, remembering what
//! departed workers held, and turning the target into the ledger's handoff
//! steps (revoke before grant) and the records to write.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::{Calculator, Output, Publication};
use crate::core::ledger::{Addressee, KeyWrite};
use crate::strategy::WorkerInfo;
use crate::wire::{AssignmentRecord, MetaRecord};
use crate::{Error, Placement, RebalanceKind};

impl Calculator {
    pub(super) fn rebalance(&mut self, now: Instant, kind: RebalanceKind, out: &mut Vec<Output>) {
        let previous = self.ledger.placement();
        // A worker known only from an empty assignment key left or died
        // before this leader took office: work placed on it would stay
        // unowned until its death verdict.
        let workers: Vec<String> = self
            .members
            .iter()
            .filter(|(w, m)| {
                !m.leaving
                    && !self.is_drained(w)
                    && (m.heard || previous.get(*w).is_some_and(|ps| !ps.is_empty()))
            })
            .map(|(w, _)| w.clone())
            .collect();
        // Start from where partitions are headed, not from what is published:
        // a rebalance in the middle of a handoff then leaves in-flight moves
        // on their way instead of sending them back or elsewhere.
        let intended = self.target.clone().unwrap_or_else(|| previous.clone());
        let hint = self.previous_with_affinity(now, &intended, &workers);
        let mut target = if workers.is_empty() {
            Placement::new()
        } else {
            let strategy = &self.strategy;
            let infos: Vec<WorkerInfo> = workers
                .iter()
                .filter_map(|w| self.members.get(w).map(|m| m.info.clone()))
                .collect();
            let partitions = self
                .parking
                .constrained(&self.config, now, &infos, &self.partitions);
            let assigned = crate::error::catch_plugin("strategy", || {
                strategy.assign_workers(&infos, &partitions, &hint)
            });
            match assigned {
                Ok(t) => t,
                Err(e) => {
                    let panicked = matches!(e, Error::PluginPanicked { .. });
                    if self.strategy_retry.failed(now, &e) || panicked {
                        out.push(Output::Report(e));
                    }
                    if panicked {
                        out.push(Output::Resign);
                    }
                    return;
                }
            }
        };
        self.strategy_retry.succeeded();
        // Every live worker gets a key, even an empty one, so that it knows it
        // is part of the group; a strategy that left a worker out or named an
        // unknown one is corrected here rather than trusted.
        target.retain(|w, _| workers.binary_search(w).is_ok());
        for w in &workers {
            target.entry(w.clone()).or_default();
        }
        let owner_before: BTreeMap<&str, &str> = previous
            .iter()
            .flat_map(|(w, ps)| ps.iter().map(move |p| (p.id(), w.as_str())))
            .collect();
        let moved = target
            .iter()
            .flat_map(|(w, ps)| ps.iter().map(move |p| (p.id(), w.as_str())))
            .filter(|(id, w)| owner_before.get(id) != Some(w))
            .count();
        self.parking
            .placed(&self.config, now, &self.partitions, &target);
        out.push(Output::Rebalanced {
            kind,
            moved,
            workers: workers.len(),
        });
        self.target = Some(target);
        self.dirty = true;
        self.last_rebalance = Some(now);
        self.restart_until = None;
        self.emergency_due = false;
        self.emergency_active = kind == RebalanceKind::Emergency;
        self.partitions_dirty = false;
        self.operator.due = false;
        self.pending_reason = Some(kind);
    }

    /// The placement the strategy should stay close to: what is published,
    /// except that a worker back under a recently departed ID is shown as
    /// still holding what it held when it left. The departed are remembered
    /// here for later.
    pub(super) fn previous_with_affinity(
        &mut self,
        now: Instant,
        previous: &Placement,
        workers: &[String],
    ) -> Placement {
        let remember = self
            .config
            .worker_id_ttl
            .max(self.config.planned_scale_window * 3);
        self.affinity
            .retain(|_, (_, since)| now.saturating_duration_since(*since) <= remember);
        for (w, ps) in previous {
            if workers.binary_search(w).is_err() && !ps.is_empty() {
                let ids = ps.iter().map(|p| p.id().to_string()).collect();
                self.affinity.insert(w.clone(), (ids, now));
            }
        }
        let mut hint = previous.clone();
        for w in workers {
            let Some((ids, _)) = self.affinity.remove(w) else {
                continue;
            };
            let ids: BTreeSet<String> = ids.into_iter().collect();
            let mut reclaimed = Vec::new();
            for (holder, ps) in hint.iter_mut() {
                if holder != w {
                    ps.retain(|p| {
                        let back = ids.contains(p.id());
                        if back {
                            reclaimed.push(p.clone());
                        }
                        !back
                    });
                }
            }
            hint.entry(w.clone()).or_default().extend(reclaimed);
        }
        hint
    }

    pub(super) fn publish_step(&mut self, now: Instant, out: &mut Vec<Output>) {
        let Some(target) = &self.target else { return };
        let addressees: BTreeMap<String, Addressee> = self
            .members
            .iter()
            .map(|(w, m)| (w.clone(), m.addressee.clone()))
            .collect();
        let version = self.version + 1;
        let held;
        let target = if self.quiet(now) {
            held = self.without_grants(target);
            &held
        } else {
            target
        };
        let mut writes = self.ledger.step(target, &addressees, version);
        // Keys whose acknowledgement is overdue are written again.
        for w in std::mem::take(&mut self.retell) {
            if !writes.iter().any(|k| k.worker == w) {
                writes.extend(self.ledger.rewrite(&w, version));
            }
        }
        // Future owners learn what is coming while the previous owners still
        // hold it (never in an emergency); a worker whose key is not written
        // this round is rewritten only when something new is on its way.
        let announce = !self.emergency_active;
        if writes.is_empty() && !announce {
            return;
        }
        let moving = self.ledger.missing_from(target);
        if announce {
            for w in self.parking.newly_incoming(&moving, &addressees) {
                if !writes.iter().any(|k| k.worker == w) {
                    writes.extend(self.ledger.rewrite(&w, version));
                }
            }
        }
        if writes.is_empty() {
            return;
        }
        self.version = version;
        self.unconfirmed = Some(version);
        let reason = self
            .pending_reason
            .take()
            .unwrap_or(if self.emergency_active {
                RebalanceKind::Emergency
            } else {
                RebalanceKind::Handoff
            });
        self.last_reason = reason;
        if writes.iter().any(|w| w.revoked > 0) {
            self.removal_times.insert(version, now);
        }
        let records = writes
            .into_iter()
            .map(|w: KeyWrite| {
                let incoming = match moving.get(&w.worker) {
                    Some(ids) if announce => ids.clone(),
                    _ => Vec::new(),
                };
                self.parking.told(&w.worker, &w.addressee, &incoming);
                (
                    w.worker,
                    AssignmentRecord {
                        version,
                        epoch: self.epoch,
                        reason,
                        instance: w.addressee.instance,
                        incarnation: w.addressee.incarnation,
                        incoming,
                        partitions: w.partitions,
                    },
                )
            })
            .collect();
        let counts = self.ledger.counts();
        let owned = self.ledger.owned_ids().len();
        out.push(Output::Publish(Publication {
            version,
            reason,
            records,
            meta: MetaRecord {
                version,
                epoch: self.epoch,
                reason,
                leader: self.leader.clone(),
                workers: counts,
                partitions: self.partitions.len(),
                unassigned: self.partitions.len().saturating_sub(owned),
                departed: self
                    .affinity
                    .iter()
                    .map(|(w, (ids, _))| (w.clone(), ids.clone()))
                    .collect(),
                moving,
                parked: self.parking.parked_ids(),
            },
        }));
    }

    pub(super) fn report_slow_handoffs(&mut self, now: Instant, out: &mut Vec<Output>) {
        let timeout = self.config.handoff_timeout;
        let oldest_pending = self.ledger.unreleased_since(u64::MAX);
        if oldest_pending.is_empty() {
            self.removal_times.clear();
            return;
        }
        let expired: Vec<u64> = self
            .removal_times
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= timeout)
            .map(|(v, _)| *v)
            .collect();
        for version in expired {
            for worker in self.ledger.unreleased_since(version) {
                if self.slow_reported.insert((worker.clone(), version)) {
                    out.push(Output::Report(Error::HandoffTimeout {
                        worker,
                        waited: timeout,
                    }));
                }
            }
            self.removal_times.remove(&version);
        }
        // A revocation everyone acknowledged can time out no more: it is
        // forgotten, so that no deadline waits for it. Those of a later
        // version wait for a superset of workers, so only the oldest can be.
        while let Some((&version, _)) = self.removal_times.first_key_value() {
            if !self.ledger.unreleased_since(version).is_empty() {
                break;
            }
            self.removal_times.remove(&version);
        }
    }

    pub(super) fn compute_settled(&self) -> bool {
        let Some(target) = &self.target else {
            return false;
        };
        let published = self.ledger.placement();
        // Removals are published at once, so a key holding as many partitions
        // as its target holds exactly its target.
        target
            .iter()
            .all(|(w, ps)| published.get(w).is_some_and(|have| have.len() == ps.len()))
    }
}
