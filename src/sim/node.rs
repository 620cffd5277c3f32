//! One simulated process: the heartbeat, election and leader "threads" of a
//! manager, each stepped like its runtime counterpart, over the process's
//! own client view of the store. Callbacks take virtual time.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use crate::core::election::{ElectionEffect, ElectionNode};
use crate::core::heartbeat::{HeartbeatEffect, HeartbeatInput, HeartbeatNode};
use crate::core::leader::{BeatLog, LeaderInput};
use crate::core::ops::Bucket;
use crate::names::LEADER_KEY;
use crate::Assignment;

use super::drive::Stepper;
use super::leader::Leader;
use super::ops::{Io, Thread};
use super::rng::Rng;
use super::Env;

/// A queued or running `on_assignment_changed` call.
struct Callback {
    version: u64,
    partitions: BTreeSet<String>,
    done_at: Instant,
}

/// A process that holds its worker ID.
pub(crate) struct Running {
    pub id: String,
    pub worker: HeartbeatNode,
    pub lease: ElectionNode,
    /// The heartbeat and election threads' wiring (inputs, watch, link).
    pub(super) beat: Stepper<HeartbeatNode>,
    pub(super) election: Stepper<ElectionNode>,
    /// `Some` while the leader thread runs.
    pub leader: Option<Leader>,
    callbacks: VecDeque<Callback>,
    completed: BTreeSet<String>,
    last_apply: u64,
    /// The process stopped itself (its ID was taken).
    pub quit: bool,
    /// The heartbeat thread's confirmed writes.
    beats: BeatLog,
    /// The last assignment installed came from a leader, and heartbeats are
    /// not degraded: the manager's `State::is_assigned`, which decides
    /// whether `stop()` drains first.
    pub assigned: bool,
    pub degraded: bool,
    /// `Some` once the process was told to stop (see `sim::leave`).
    pub(super) leaving: Option<super::leave::Leaving>,
}

/// What a step tells the world.
#[derive(Default)]
pub(crate) struct Notes {
    pub violations: Vec<String>,
    pub trace: Vec<String>,
    /// The owned set of this process changed.
    pub owned_changed: bool,
    /// Assignments installed (the fencing-token check).
    pub installs: Vec<Assignment>,
    /// Errors the nodes reported (as `on_error` would get them).
    pub reports: Vec<String>,
    /// The heartbeat node entered (`true`) or left `Degraded`, in order.
    pub degraded: Vec<bool>,
}

impl Running {
    pub fn new(env: &Env, id: String, instance: &str, revision: u64, now: Instant) -> Self {
        let c = &env.config;
        Running {
            lease: ElectionNode::new(&id, instance, c.election_ttl, "leader", now),
            worker: HeartbeatNode::new(&id, instance, revision, c, ("workers", "assignments"), now),
            beat: Stepper::new(
                Thread::Beat,
                Some((Bucket::Assignments, Some(id.clone()))),
                c.heartbeat_interval,
                now,
            ),
            election: Stepper::new(
                Thread::Lease,
                Some((Bucket::Leader, Some(LEADER_KEY.to_string()))),
                c.heartbeat_interval,
                now,
            ),
            id,
            leader: None,
            callbacks: VecDeque::new(),
            completed: BTreeSet::new(),
            last_apply: 0,
            quit: false,
            beats: BeatLog::default(),
            assigned: false,
            degraded: false,
            leaving: None,
        }
    }

    /// Partitions this process may be working on: those of its last
    /// completed callback, plus those of every callback queued or running
    /// (a partition counts as owned from the moment its grant is installed
    /// until the callback that removes it returns).
    pub fn owned(&self) -> impl Iterator<Item = &String> {
        let queued = self.callbacks.iter().flat_map(|c| c.partitions.iter());
        self.completed.iter().chain(queued)
    }

    /// Whether callbacks are queued or running.
    pub fn busy(&self) -> bool {
        !self.callbacks.is_empty()
    }

    /// One step of every thread at `now`.
    pub fn step(&mut self, env: &Env, io: &mut Io, rng: &mut Rng, now: Instant, notes: &mut Notes) {
        self.callbacks_step(now, notes);
        self.leave_step(now, notes);
        let mut effects = Vec::new();
        self.beat
            .step(&mut self.worker, io, now, &mut |_, e| effects.push(e));
        for effect in effects {
            self.on_beat_effect(env, rng, effect, now, notes);
        }
        if self.quit {
            return;
        }
        if self.election_ended() {
            drop(io.due(Thread::Lease, now));
        } else {
            let mut effects = Vec::new();
            self.election
                .step(&mut self.lease, io, now, &mut |_, e| effects.push(e));
            let forgot = io
                .stores
                .office
                .lease_forgot
                .load(std::sync::atomic::Ordering::SeqCst);
            for effect in effects {
                self.on_lease_effect(env, effect, (now, forgot), notes);
            }
            self.after_election_step(now, notes);
        }
        io.lease_valid_until = self.lease.valid_until();
        match &mut self.leader {
            Some(leader) => leader.step(env, io, now, notes),
            // A write sent by a leader thread that has ended since still
            // reaches the store.
            None => drop(io.due(Thread::Leader, now)),
        }
    }

    fn callbacks_step(&mut self, now: Instant, notes: &mut Notes) {
        while self.callbacks.front().is_some_and(|c| c.done_at <= now) {
            let Some(done) = self.callbacks.pop_front() else {
                break;
            };
            self.completed = done.partitions;
            notes.owned_changed = true;
            self.beat.push(HeartbeatInput::Applied(done.version));
        }
    }

    fn install(
        &mut self,
        env: &Env,
        rng: &mut Rng,
        a: &Assignment,
        now: Instant,
        notes: &mut Notes,
    ) {
        let start = self.callbacks.back().map_or(now, |c| c.done_at.max(now));
        self.callbacks.push_back(Callback {
            version: a.version(),
            partitions: a.partitions().iter().map(|p| p.id().to_string()).collect(),
            done_at: start + rng.duration(env.apply_time.0, env.apply_time.1),
        });
        notes.owned_changed = true;
    }

    /// What the heartbeat node's effects do, as in `runtime::worker`.
    fn on_beat_effect(
        &mut self,
        env: &Env,
        rng: &mut Rng,
        effect: HeartbeatEffect,
        now: Instant,
        notes: &mut Notes,
    ) {
        match effect {
            HeartbeatEffect::Install {
                assignment,
                has_assignment,
            } => {
                if has_assignment {
                    if assignment.version() <= self.last_apply {
                        notes.violations.push(format!(
                            "{} applied version {} after version {}",
                            self.id,
                            assignment.version(),
                            self.last_apply
                        ));
                    }
                    self.last_apply = self.last_apply.max(assignment.version());
                    notes.installs.push(assignment.clone());
                    self.assigned = true;
                } else {
                    self.assigned = false;
                    notes.trace.push(format!("{} fenced itself", self.id));
                }
                self.install(env, rng, &assignment, now, notes);
            }
            HeartbeatEffect::IdLost => {
                notes.trace.push(format!("{} lost its ID: quits", self.id));
                self.quit = true;
            }
            HeartbeatEffect::Prepare {
                version: Some(version),
                ..
            } => {
                // The simulated on_prepare returns at once; the version
                // is acknowledged in callback order.
                let held = self.callbacks.back().map(|c| c.partitions.clone());
                let done_at = self.callbacks.back().map_or(now, |c| c.done_at.max(now));
                self.callbacks.push_back(Callback {
                    version,
                    partitions: held.unwrap_or_else(|| self.completed.clone()),
                    done_at,
                });
            }
            // As the runtime does: a confirmed heartbeat is remembered
            // for the leader terms to come.
            HeartbeatEffect::Beat(revision) => self.beats.record(revision, now),
            HeartbeatEffect::Report(e) => notes.reports.push(e.to_string()),
            HeartbeatEffect::Exited => self.exited(now, notes),
            HeartbeatEffect::Drained => self.drained(now, notes),
            HeartbeatEffect::Degraded(on) => {
                self.degraded = on;
                notes.degraded.push(on);
            }
            HeartbeatEffect::Prepare { version: None, .. }
            | HeartbeatEffect::StoreWentBack
            | HeartbeatEffect::BeatFailed => {}
        }
    }

    /// What the election node's effects do, as in `runtime::election`.
    fn on_lease_effect(
        &mut self,
        env: &Env,
        effect: ElectionEffect,
        (now, lease_forgot): (Instant, u64),
        notes: &mut Notes,
    ) {
        match effect {
            ElectionEffect::Acquired { epoch } => {
                self.beat.push(HeartbeatInput::LeaseEpoch(epoch));
                notes
                    .trace
                    .push(format!("{} leads, epoch {epoch}", self.id));
                let valid_until = self.lease.valid_until();
                let beats = self.beats.clone();
                let term = (epoch, lease_forgot);
                self.leader = Some(Leader::new(env, &self.id, term, now, beats, valid_until));
            }
            ElectionEffect::Lost => {
                notes.trace.push(format!("{} lost the lease", self.id));
                self.leader = None;
            }
            ElectionEffect::Epoch(epoch) => self.beat.push(HeartbeatInput::LeaseEpoch(epoch)),
            ElectionEffect::EpochReset => self.beat.push(HeartbeatInput::LeaseReset(0)),
            ElectionEffect::Valid(until) => {
                if let Some(leader) = &mut self.leader {
                    leader.push(LeaderInput::Lease(until));
                }
            }
            ElectionEffect::Report(e) => notes.reports.push(e.to_string()),
            ElectionEffect::Settled => {}
        }
    }
}
