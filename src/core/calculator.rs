//! The leader's calculator: who is alive, when to rebalance, and what to
//! publish. Pure: it never reads the clock or touches NATS; the leader thread
//! feeds it events with `now` and carries out what it returns.
//!
//! One job per submodule: `membership` (liveness, deaths, restarts,
//! suspects), `takeover` (adopting a previous leader's records), `schedule`
//! (windows, the phase, `next_deadline`), `publication` (the strategy and
//! the ledger's handoff steps), `operator` (drain and rebalance requests),
//! `sli` (what counts as unowned). This file holds the state and `tick`,
//! which strings them together.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::leader::retry::ErrorRetry;
use crate::core::ledger::{Addressee, Ledger};
use crate::core::placement::Parking;
use crate::strategy::{AssignmentStrategy, WorkerInfo};
use crate::wire::{AssignmentRecord, MetaRecord};
use crate::{Config, Error, Partition, Placement, RebalanceKind};

mod membership;
mod operator;
mod publication;
mod quiesce;
mod retell;
mod schedule;
mod sli;
mod takeover;

/// What the leader is doing, reflected in its [`State`](crate::State).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
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
pub(crate) struct Publication {
    /// The new version.
    pub(crate) version: u64,
    /// Why.
    pub(crate) reason: RebalanceKind,
    /// One record per changed worker key.
    pub(crate) records: Vec<(String, AssignmentRecord)>,
    /// The group summary.
    pub(crate) meta: MetaRecord,
}

/// What the calculator asks the leader thread to do or report.
#[derive(Debug)]
pub(crate) enum Output {
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
    /// The highest version it reports having been handed (`WorkerRecord::told`).
    told: u64,
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
pub(crate) struct Calculator {
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
    /// The store forgot: no new grant before this instant (`quiesce`).
    quiet_until: Option<Instant>,
    emergency_due: bool,
    emergency_active: bool,
    last_rebalance: Option<Instant>,
    /// When the last heartbeat of anyone arrived: the leader's own beats
    /// arrive every interval, so a long silence means this leader is blind
    /// (its watch or link is down), not that everyone died.
    last_heard: Instant,
    /// When `tick` last ran (or the term began): what a deadline due
    /// already is reported as, and the instant after which a blind leader
    /// can give no more death verdicts.
    ticked: Instant,
    pending_reason: Option<RebalanceKind>,
    last_reason: RebalanceKind,
    removal_times: BTreeMap<u64, Instant>,
    /// Workers whose acknowledgement is awaited, since when (see
    /// `retell.rs`).
    ack_waits: BTreeMap<String, Instant>,
    /// Workers whose key is to be written again in the next publication.
    retell: BTreeSet<String>,
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
    pub(crate) fn raise_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// A calculator for a leader that took office at `now` with `epoch`.
    pub(crate) fn new(
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
            quiet_until: None,
            emergency_due: false,
            emergency_active: false,
            last_rebalance: None,
            last_heard: now,
            ticked: now,
            pending_reason: None,
            last_reason: RebalanceKind::ColdStart,
            removal_times: BTreeMap::new(),
            ack_waits: BTreeMap::new(),
            retell: BTreeSet::new(),
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

    /// The partition source's current list.
    pub(crate) fn set_partitions(&mut self, partitions: Vec<Partition>) {
        let partitions = sorted(partitions);
        if partitions != self.partitions {
            self.partitions = partitions;
            self.partitions_dirty = true;
        }
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// The last version published (or adopted).
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// The leader thread wrote every key of publication `version`: until
    /// then the phase stays `Rebalancing` or `Emergency`.
    pub(crate) fn confirm_published(&mut self, version: u64) {
        if self.unconfirmed.is_some_and(|v| v <= version) {
            self.unconfirmed = None;
            self.phase = self.compute_phase();
        }
    }

    /// Live workers as the leader sees them.
    pub(crate) fn members(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// Advances to `now`: declares the dead, rebalances when due, publishes
    /// what the handoff rule allows.
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<Output> {
        self.ticked = self.ticked.max(now);
        self.strategy_retry.expire(now);
        let mut out: Vec<Output> = self.clears.drain(..).map(Output::Clear).collect();
        self.detect_deaths(now, &mut out);
        self.end_quiet(now);
        if let Some(kind) = self.due(now).filter(|_| !self.strategy_retry.waiting(now)) {
            self.rebalance(now, kind, &mut out);
        }
        self.update_awaited_acks(now);
        if self.dirty {
            self.dirty = false;
            self.publish_step(now, &mut out);
            self.settled = self.compute_settled();
        }
        self.report_slow_handoffs(now, &mut out);
        self.phase = self.compute_phase();
        out
    }
}

/// How user code that returned an error is retried: after a heartbeat
/// interval, doubling up to 32 intervals (at most 30 s).
pub(crate) fn plugin_retry(config: &Config) -> ErrorRetry {
    let first = config.heartbeat_interval;
    ErrorRetry::new(first, (first * 32).min(Duration::from_secs(30)))
}

fn sorted(mut partitions: Vec<Partition>) -> Vec<Partition> {
    partitions.sort_by(|a, b| a.id().cmp(b.id()));
    partitions.dedup_by(|a, b| a.id() == b.id());
    partitions
}
