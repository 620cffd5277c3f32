//! The leader's calculator: who is alive, when to rebalance, and what to
//! publish. Pure: it never reads the clock or touches NATS; the leader thread
//! feeds it events with `now` and carries out what it returns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::leader::retry::ErrorRetry;
use crate::core::ledger::{Addressee, KeyWrite, Ledger};
use crate::core::placement::Parking;
use crate::strategy::{AssignmentStrategy, WorkerInfo};
use crate::wire::{AssignmentRecord, MetaRecord, WorkerRecord};
use crate::{Config, Error, Partition, Placement, RebalanceKind};

/// What the leader is doing, reflected in its [`State`](crate::State).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No assignment yet: waiting out the cold-start (or restart) window.
    ColdStart,
    /// A planned change is waiting out its window.
    Scaling,
    /// Handing partitions over.
    Rebalancing,
    /// Reassigning a dead worker's partitions.
    Emergency,
    /// Everything published and released.
    Stable,
}

/// One publication round: keys to write at a new version.
#[derive(Clone, Debug)]
pub struct Publication {
    /// The new version.
    pub version: u64,
    /// Why.
    pub reason: RebalanceKind,
    /// One record per changed worker key.
    pub records: Vec<(String, AssignmentRecord)>,
    /// The group summary.
    pub meta: MetaRecord,
}

/// What the calculator asks the leader thread to do or report.
#[derive(Debug)]
pub enum Output {
    /// Write these keys.
    Publish(Publication),
    /// Delete this worker's assignment key (it is dead or gone).
    Clear(String),
    /// A rebalance was computed (for logs and metrics).
    Rebalanced {
        /// The kind.
        kind: RebalanceKind,
        /// Partitions whose owner changes.
        moved: usize,
        /// Live workers in the new target.
        workers: usize,
    },
    /// Workers were declared dead.
    Died(Vec<String>),
    /// Something worth an `on_error` report.
    Report(Error),
    /// The strategy panicked: this leader should hand the lease to another
    /// worker (reported just before).
    Resign,
}

#[derive(Clone, Debug)]
struct Member {
    addressee: Addressee,
    applied: u64,
    leaving: bool,
    /// Heartbeats seen by this leader; false for a worker known only from
    /// the assignment keys it adopted.
    heard: bool,
    last_seen: Instant,
    joined: Instant,
    /// The process the previous leader published to: it was working
    /// before this term began.
    established: bool,
    /// Labels and capacity from its heartbeat.
    info: WorkerInfo,
}

/// The leader's decision core.
pub struct Calculator {
    config: Config,
    strategy: Arc<dyn AssignmentStrategy>,
    leader: String,
    epoch: u64,
    started: Instant,
    version: u64,
    partitions: Vec<Partition>,
    partitions_dirty: bool,
    members: BTreeMap<String, Member>,
    ledger: Ledger,
    target: Option<Placement>,
    restart_until: Option<Instant>,
    /// Whether the store's records were adopted (from then on a worker's
    /// applied version can be checked against them).
    adopted: bool,
    /// A new leader has not seen the adopted workers yet: no planned
    /// rebalance before it knows who is really alive.
    settle_until: Option<Instant>,
    emergency_due: bool,
    emergency_active: bool,
    last_rebalance: Option<Instant>,
    /// When the last heartbeat of anyone arrived: the leader's own beats
    /// arrive every interval, so a long silence means this leader is blind
    /// (its watch or link is down), not that everyone died.
    last_heard: Instant,
    pending_reason: Option<RebalanceKind>,
    last_reason: RebalanceKind,
    removal_times: BTreeMap<u64, Instant>,
    unconfirmed: Option<u64>,
    /// Something changed that a publication step could act on; without it
    /// the step (linear in partitions) is skipped: a stable group's leader
    /// hears every heartbeat and must not redo the work each time.
    dirty: bool,
    /// Every target worker's key holds its target (cached by the step).
    settled: bool,
    clears: Vec<String>,
    /// Partitions of workers that left or died, by worker ID: if a process
    /// comes back under that ID (a rolling restart with preferred IDs), it is
    /// given those partitions back rather than arbitrary ones.
    affinity: BTreeMap<String, (Vec<String>, Instant)>,
    slow_reported: BTreeSet<(String, u64)>,
    phase: Phase,
    /// A strategy that returned an error: the placement in force stays,
    /// and the next attempt backs off.
    strategy_retry: ErrorRetry,
    operator: operator::Operator,
    /// Partitions no live worker may own, spills, and what each future
    /// owner was told is coming (see `core::placement`).
    parking: Parking,
}

impl Calculator {
    /// The term's epoch, raised above one the lease bucket forgot (see
    /// `core::leader::outranked`): every record from now on carries it.
    pub fn raise_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// A calculator for a leader that took office at `now` with `epoch`.
    pub fn new(
        config: Config,
        strategy: Arc<dyn AssignmentStrategy>,
        leader: impl Into<String>,
        epoch: u64,
        now: Instant,
        partitions: Vec<Partition>,
    ) -> Self {
        Calculator {
            strategy,
            leader: leader.into(),
            epoch,
            started: now,
            version: 0,
            partitions: sorted(partitions),
            partitions_dirty: false,
            members: BTreeMap::new(),
            ledger: Ledger::default(),
            target: None,
            restart_until: None,
            adopted: false,
            settle_until: None,
            emergency_due: false,
            emergency_active: false,
            last_rebalance: None,
            last_heard: now,
            pending_reason: None,
            last_reason: RebalanceKind::ColdStart,
            removal_times: BTreeMap::new(),
            unconfirmed: None,
            dirty: true,
            settled: false,
            clears: Vec::new(),
            affinity: BTreeMap::new(),
            slow_reported: BTreeSet::new(),
            phase: Phase::ColdStart,
            strategy_retry: plugin_retry(&config),
            config,
            operator: operator::Operator::default(),
            parking: Parking::default(),
        }
    }

    /// Takes over the assignments a previous leader published, before the
    /// first [`tick`](Self::tick). Their workers count as alive from `now`
    /// until their heartbeats say otherwise (a new leader has not seen them
    /// yet), so a stable group is not reshuffled.
    pub fn adopt(
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
            .map(|(w, m)| (w.clone(), m.addressee.clone(), m.applied))
            .collect();
        for (worker, addressee, applied) in heard {
            self.check_applied(&worker, &addressee, applied);
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
    pub fn forget_unheard(&mut self) {
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
    pub fn adopt_meta(&mut self, now: Instant, meta: &MetaRecord) {
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

    /// A heartbeat (or the initial replay) of a worker's record.
    pub fn observe_worker(&mut self, now: Instant, worker: &str, record: &WorkerRecord) {
        if self.is_blind(now) {
            // Recovery grace: heartbeats were missing only from this
            // leader's point of view, so every member starts afresh.
            log::info!(
                "leader hears heartbeats again after {:?}",
                now - self.last_heard
            );
            for m in self.members.values_mut() {
                m.last_seen = m.last_seen.max(now);
            }
        }
        self.last_heard = now;
        let addressee = Addressee {
            instance: record.instance.clone(),
            incarnation: record.incarnation,
        };
        self.dirty |= !self.members.contains_key(worker);
        let member = self
            .members
            .entry(worker.to_string())
            .or_insert_with(|| Member {
                addressee: addressee.clone(),
                applied: 0,
                leaving: false,
                heard: true,
                last_seen: now,
                joined: now,
                info: WorkerInfo::new(worker),
                established: false,
            });
        if member.addressee != addressee {
            // A restarted process (or a new incarnation) under the same ID:
            // as far as windows go, it has just joined.
            member.joined = now;
            member.established = false;
        }
        member.addressee = addressee.clone();
        member.applied = record.applied;
        member.leaving = record.leaving;
        member.info = record.info(worker);
        member.heard = true;
        member.last_seen = now;
        self.clear_if_void(worker, &addressee);
        if self.adopted {
            self.check_applied(worker, &addressee, record.applied);
        }
        self.dirty |= self.ledger.observe(worker, &addressee, record.applied);
    }

    /// `worker` applied `applied`: when the store has no record of that
    /// version for it, the store lost writes (a rolled-back or emptied
    /// server). Until the worker applies one of this leader's versions it
    /// may hold anything; and versions, so fencing tokens, go on from above
    /// what it applied, or it would ignore this leader's records as old.
    fn check_applied(&mut self, worker: &str, addressee: &Addressee, applied: u64) {
        if applied == 0 || !self.ledger.suspect(worker, addressee, applied) {
            return;
        }
        log::warn!(
            "[{}] {worker} applied v{applied}, which the store has no record of: the store lost writes; its partitions count as held until it applies a new version",
            self.leader,
        );
        self.version = self.version.max(applied);
        self.dirty = true;
    }

    /// `worker`'s last heartbeat is known to have been written by `by`
    /// (see `leader::BeatLog`): it counts as seen then, if that is earlier
    /// than the replay that showed it.
    pub fn seen_by(&mut self, worker: &str, by: Instant) {
        if let Some(m) = self.members.get_mut(worker) {
            m.last_seen = m.last_seen.min(by);
        }
    }

    /// A restarted process's old record still lists what the old process
    /// held: it is deleted before those partitions are granted again, so
    /// that readers of the bucket never see them under two workers.
    fn clear_if_void(&mut self, worker: &str, addressee: &Addressee) {
        if self.ledger.shows_void(worker, addressee) && !self.clears.iter().any(|w| w == worker) {
            self.clears.push(worker.to_string());
        }
    }

    /// A worker deleted its key: it left after releasing everything. Its
    /// assignment key is cleared at the next tick.
    pub fn worker_gone(&mut self, worker: &str) {
        self.dirty = true;
        self.members.remove(worker);
        if self.ledger.forget(worker) {
            self.clears.push(worker.to_string());
        }
    }

    /// The partition source's current list.
    pub fn set_partitions(&mut self, partitions: Vec<Partition>) {
        let partitions = sorted(partitions);
        if partitions != self.partitions {
            self.partitions = partitions;
            self.partitions_dirty = true;
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The last version published (or adopted).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The leader thread wrote every key of publication `version`: until
    /// then the phase stays `Rebalancing` or `Emergency`.
    pub fn confirm_published(&mut self, version: u64) {
        if self.unconfirmed.is_some_and(|v| v <= version) {
            self.unconfirmed = None;
            self.phase = self.compute_phase();
        }
    }

    /// Live workers as the leader sees them.
    pub fn members(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// Advances to `now`: declares the dead, rebalances when due, publishes
    /// what the handoff rule allows.
    pub fn tick(&mut self, now: Instant) -> Vec<Output> {
        self.strategy_retry.expire(now);
        let mut out: Vec<Output> = self.clears.drain(..).map(Output::Clear).collect();
        self.detect_deaths(now, &mut out);
        if let Some(kind) = self.due(now).filter(|_| !self.strategy_retry.waiting(now)) {
            self.rebalance(now, kind, &mut out);
        }
        if self.dirty {
            self.dirty = false;
            self.publish_step(now, &mut out);
            self.settled = self.compute_settled();
        }
        self.report_slow_handoffs(now, &mut out);
        self.phase = self.compute_phase();
        out
    }

    /// When `tick` should run next, at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        let dead_after = self.config.heartbeat_ttl + self.config.emergency_grace;
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for m in self.members.values() {
            consider(m.last_seen + dead_after + Duration::from_millis(1));
        }
        if self.target.is_none() {
            consider(self.started + self.config.cold_start_window);
        }
        if let Some(t) = self.restart_until {
            consider(t);
        }
        if let Some(t) = self.window_deadline() {
            consider(t);
        }
        if let Some((_, t)) = self.removal_times.iter().next() {
            consider(*t + self.config.handoff_timeout);
        }
        if let Some(t) = self.parking.spill_at(&self.config) {
            consider(t);
        }
        match self.strategy_retry.retry_at() {
            None => next,
            // A failing strategy is not asked again before its retry, so
            // nothing but a death verdict (it only clears keys) is due
            // before then.
            Some(r) => Some(self.next_verdict().map_or(r, |v| v.min(r))),
        }
    }

    /// The earliest death verdict due.
    fn next_verdict(&self) -> Option<Instant> {
        let dead_after = self.config.heartbeat_ttl + self.config.emergency_grace;
        self.members
            .values()
            .map(|m| m.last_seen + dead_after + Duration::from_millis(1))
            .min()
    }

    fn is_blind(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_heard) > self.config.heartbeat_interval * 3
    }

    fn detect_deaths(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.is_blind(now) {
            return;
        }
        let ttl = self.config.heartbeat_ttl;
        let dead_after = ttl + self.config.emergency_grace;
        let dead: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.last_seen) > dead_after)
            .map(|(w, _)| w.clone())
            .collect();
        if dead.is_empty() {
            return;
        }
        self.dirty = true;
        let restart = self.is_fleet_restart(now, &dead);
        let held_work = dead
            .iter()
            .any(|w| self.target.as_ref().is_some_and(|t| t.contains_key(w)));
        for w in &dead {
            self.members.remove(w);
            if self.ledger.forget(w) {
                out.push(Output::Clear(w.clone()));
            }
        }
        out.push(Output::Died(dead));
        if restart {
            self.restart_until = Some(now + self.config.cold_start_window);
            self.emergency_due = false;
        } else if held_work && self.restart_until.is_none() {
            self.emergency_due = true;
        }
    }

    /// Whether the deaths in `dead` are a fleet restart rather than a loss:
    /// more than `restart_ratio` of the target is missing *and* no survivor
    /// that was working before the loss holds any published partition. A zone loss, however large, leaves
    /// survivors working (the leader's own worker, or the workers a new
    /// leader adopted), so their peers' partitions go to them at once; after
    /// an all-gone-then-back restart the workers present are new processes
    /// holding nothing, and waiting for the rest to come back makes it one
    /// cold start instead of an emergency followed by a planned rebalance.
    fn is_fleet_restart(&self, now: Instant, dead: &[String]) -> bool {
        let ttl = self.config.heartbeat_ttl;
        let Some(target) = &self.target else {
            return false;
        };
        let missing = target
            .keys()
            .filter(|w| {
                self.members
                    .get(w.as_str())
                    .is_none_or(|m| now.saturating_duration_since(m.last_seen) > ttl)
            })
            .count();
        let mostly_gone =
            target.len() > 1 && missing as f64 / target.len() as f64 > self.config.restart_ratio;
        if !mostly_gone {
            return false;
        }
        // Working since before the loss: a process that came back after it
        // may already have been given its old partitions again.
        let lost_at = dead
            .iter()
            .filter_map(|w| self.members.get(w))
            .map(|m| m.last_seen)
            .min();
        let published = self.ledger.placement();
        let survivors_work = self.members.iter().any(|(w, m)| {
            m.heard
                && !dead.contains(w)
                && (m.established || lost_at.is_some_and(|t| m.joined < t))
                && published.get(w).is_some_and(|ps| !ps.is_empty())
        });
        !survivors_work
    }

    /// Members waiting for a planned rebalance: not in the target, or with
    /// nothing in it although they (re)joined after the last rebalance and
    /// there is enough work to go round (e.g. a process restarted under the
    /// ID of one that had drained).
    fn joiners(&self) -> impl Iterator<Item = &Member> {
        let target = self.target.as_ref();
        let drained = &self.operator.drained;
        let takers = self
            .members
            .iter()
            .filter(|(w, m)| !m.leaving && !drained.contains(*w))
            .count();
        let busy_enough = self.partitions.len() >= takers;
        let last = self.last_rebalance;
        self.members
            .iter()
            .filter(move |(w, m)| {
                let Some(t) = target else { return false };
                !m.leaving
                    && m.heard
                    && !drained.contains(*w)
                    && match t.get(*w) {
                        None => true,
                        Some(ps) => {
                            ps.is_empty() && busy_enough && last.is_none_or(|l| m.joined > l)
                        }
                    }
            })
            .map(|(_, m)| m)
    }

    fn window_deadline(&self) -> Option<Instant> {
        let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
        for m in self.joiners() {
            first = Some(first.map_or(m.joined, |f| f.min(m.joined)));
            last = Some(last.map_or(m.joined, |l| l.max(m.joined)));
        }
        let window = self.config.planned_scale_window;
        let mut deadline = (last? + window).min(first? + window * 3);
        if let Some(t) = self.last_rebalance {
            deadline = deadline.max(t + self.config.rebalance_cooldown);
        }
        if let Some(t) = self.settle_until {
            deadline = deadline.max(t);
        }
        Some(deadline)
    }

    fn due(&self, now: Instant) -> Option<RebalanceKind> {
        let Some(target) = &self.target else {
            let open = now >= self.started + self.config.cold_start_window;
            return (open && !self.members.is_empty()).then_some(RebalanceKind::ColdStart);
        };
        if let Some(until) = self.restart_until {
            return (now >= until).then_some(RebalanceKind::Restart);
        }
        if self.emergency_due || self.parking.spill_due(&self.config, now) {
            // A spill places partitions nobody may own by label: like an
            // emergency, it waits for no window and revokes nothing.
            return Some(RebalanceKind::Emergency);
        }
        if self.operator_due(now) {
            return Some(RebalanceKind::PlannedScale);
        }
        let departed = target
            .keys()
            .any(|w| self.members.get(w).is_none_or(|m| m.leaving));
        if departed {
            return Some(RebalanceKind::PlannedScale);
        }
        if self.partitions_dirty {
            return Some(
                self.pending_reason
                    .unwrap_or(RebalanceKind::PartitionsChanged),
            );
        }
        match self.window_deadline() {
            Some(deadline) if now >= deadline => Some(RebalanceKind::PlannedScale),
            _ => None,
        }
    }

    fn rebalance(&mut self, now: Instant, kind: RebalanceKind, out: &mut Vec<Output>) {
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
        self.parking.placed(now, &self.partitions, &target);
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
    fn previous_with_affinity(
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

    fn publish_step(&mut self, now: Instant, out: &mut Vec<Output>) {
        let Some(target) = &self.target else { return };
        let addressees: BTreeMap<String, Addressee> = self
            .members
            .iter()
            .map(|(w, m)| (w.clone(), m.addressee.clone()))
            .collect();
        let version = self.version + 1;
        let mut writes = self.ledger.step(target, &addressees, version);
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

    fn report_slow_handoffs(&mut self, now: Instant, out: &mut Vec<Output>) {
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
    }

    fn compute_settled(&self) -> bool {
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

    fn compute_phase(&mut self) -> Phase {
        if self.target.is_none() {
            return Phase::ColdStart;
        }
        if self.restart_until.is_some() {
            return Phase::Scaling;
        }
        let settled = self.settled;
        // An emergency lasts until its assignment is written; a cold start
        // whose first round granted everything is simply done.
        let writing_emergency = self.emergency_active && self.unconfirmed.is_some();
        if !settled || self.emergency_due || writing_emergency {
            return if self.emergency_active || self.emergency_due {
                Phase::Emergency
            } else {
                Phase::Rebalancing
            };
        }
        self.emergency_active = false;
        if self.window_deadline().is_some() {
            return Phase::Scaling;
        }
        Phase::Stable
    }
}

/// How user code that returned an error is retried: after a heartbeat
/// interval, doubling up to 32 intervals (at most 30 s).
pub(crate) fn plugin_retry(config: &Config) -> ErrorRetry {
    let first = config.heartbeat_interval;
    ErrorRetry::new(first, (first * 32).min(Duration::from_secs(30)))
}
mod operator;
mod sli;

fn sorted(mut partitions: Vec<Partition>) -> Vec<Partition> {
    partitions.sort_by(|a, b| a.id().cmp(b.id()));
    partitions.dedup_by(|a, b| a.id() == b.id());
    partitions
}
