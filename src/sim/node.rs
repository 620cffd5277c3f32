//! One simulated process: the heartbeat, election and leader "threads" of a
//! manager, each stepped like its runtime counterpart, over the process's
//! own client view of the store. Callbacks take virtual time.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use crate::core::election::{ElectionEffect, ElectionNode};
use crate::core::heartbeat::{HeartbeatEffect, HeartbeatNode};
use crate::core::leader::BeatLog;
use crate::core::ops::Reply;
use crate::names::LEADER_KEY;
use crate::store::Watch;
use crate::Assignment;

use super::leader::Leader;
use super::ops::{Io, Thread};
use super::rng::Rng;
use super::watches::{drain, Ended};
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
    assign_watch: Option<Watch>,
    lease_watch: Option<Watch>,
    watch_retry: Instant,
    /// `Some` while the leader thread runs.
    pub leader: Option<Leader>,
    callbacks: VecDeque<Callback>,
    completed: BTreeSet<String>,
    last_apply: u64,
    /// The process stopped itself (its ID was taken).
    pub quit: bool,
    /// The heartbeat thread's confirmed writes.
    beats: BeatLog,
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
}

impl Running {
    pub fn new(env: &Env, id: String, instance: &str, revision: u64, now: Instant) -> Self {
        let c = &env.config;
        Running {
            lease: ElectionNode::new(&id, instance, c.election_ttl, "leader", now),
            worker: HeartbeatNode::new(&id, instance, revision, c, ("workers", "assignments"), now),
            id,
            assign_watch: None,
            lease_watch: None,
            watch_retry: now,
            leader: None,
            callbacks: VecDeque::new(),
            completed: BTreeSet::new(),
            last_apply: 0,
            quit: false,
            beats: BeatLog::default(),
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
        if (self.assign_watch.is_none() || self.lease_watch.is_none()) && now >= self.watch_retry {
            self.open_watches(io);
            self.watch_retry = now + env.config.heartbeat_interval;
        }
        self.beat_step(env, io, rng, now, notes);
        if self.quit {
            return;
        }
        self.lease_step(env, io, now, notes);
        let valid_until = self.lease.valid_until();
        io.lease_valid_until = valid_until;
        match &mut self.leader {
            Some(leader) => {
                leader.step(env, io, valid_until, now, notes);
            }
            // A write sent by a leader thread that has ended since still
            // reaches the store.
            None => drop(io.due(Thread::Leader, now)),
        }
    }

    /// As `runtime::worker` does: a confirmed write of the heartbeat
    /// thread is remembered for the leader terms to come.
    fn record_beat(&mut self, reply: &Reply, now: Instant) {
        if let Reply::Written(Ok(revision)) = reply {
            self.beats.record(*revision, now);
        }
    }

    fn open_watches(&mut self, io: &Io) {
        if self.assign_watch.is_none() {
            self.assign_watch = io.stores.assignments.watch(Some(&self.id)).ok();
        }
        if self.lease_watch.is_none() {
            self.lease_watch = io.stores.leader.watch(Some(LEADER_KEY)).ok();
        }
    }

    fn callbacks_step(&mut self, now: Instant, notes: &mut Notes) {
        while self.callbacks.front().is_some_and(|c| c.done_at <= now) {
            let Some(done) = self.callbacks.pop_front() else {
                break;
            };
            self.completed = done.partitions;
            notes.owned_changed = true;
            self.worker.handle_applied(now, done.version);
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

    /// The heartbeat node, driven like `runtime::worker` drives it, over
    /// this process's link.
    fn beat_step(
        &mut self,
        env: &Env,
        io: &mut Io,
        rng: &mut Rng,
        now: Instant,
        notes: &mut Notes,
    ) {
        if let Some(reply) = io.due(Thread::Beat, now) {
            self.record_beat(&reply, now);
            self.worker.handle_reply(now, reply);
        }
        if !io.blocked(Thread::Beat) {
            // An ended watch is reopened; its replay re-announces the key.
            let (events, _) = drain(&mut self.assign_watch);
            for ev in events {
                self.worker.handle_watch(now, ev);
            }
            if self.worker.poll_timeout().is_some_and(|t| now >= t) {
                self.worker.handle_timeout(now);
            }
            while let Some(op) = self.worker.poll_op(now) {
                match io.issue(Thread::Beat, op, now) {
                    Some(reply) => {
                        self.record_beat(&reply, now);
                        self.worker.handle_reply(now, reply)
                    }
                    _ => break,
                }
            }
        }
        while let Some(effect) = self.worker.poll_effect() {
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
                    } else {
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
                HeartbeatEffect::Report(e) => notes.reports.push(e.to_string()),
                HeartbeatEffect::Exited => {
                    notes.trace.push(format!("{} left", self.id));
                    self.quit = true;
                }
                HeartbeatEffect::Prepare { version: None, .. }
                | HeartbeatEffect::Degraded(_)
                | HeartbeatEffect::Beat
                | HeartbeatEffect::BeatFailed
                | HeartbeatEffect::Drained => {}
            }
        }
    }

    /// The election node, driven like `runtime::election` drives it, over
    /// this process's link.
    fn lease_step(&mut self, env: &Env, io: &mut Io, now: Instant, notes: &mut Notes) {
        if let Some(reply) = io.due(Thread::Lease, now) {
            self.lease.handle_reply(now, reply);
        }
        if !io.blocked(Thread::Lease) {
            let (seen, ended) = drain(&mut self.lease_watch);
            for ev in seen {
                self.lease.handle_watch(now, ev);
            }
            if ended == Ended::Forgot {
                // As `runtime::election`: lease revisions start again, so
                // the epochs seen before no longer count.
                notes
                    .trace
                    .push(format!("{} saw the lease bucket forget", self.id));
                self.lease.handle_store_reset(now);
                self.worker.handle_lease_reset(now, 0);
            }
            if self.lease.poll_timeout().is_some_and(|t| now >= t) {
                self.lease.handle_timeout(now);
            }
            while let Some(op) = self.lease.poll_op(now) {
                match io.issue(Thread::Lease, op, now) {
                    Some(reply) => self.lease.handle_reply(now, reply),
                    _ => break,
                }
            }
        }
        while let Some(effect) = self.lease.poll_effect() {
            match effect {
                ElectionEffect::Acquired { epoch } => {
                    self.worker.handle_lease_epoch(epoch);
                    notes
                        .trace
                        .push(format!("{} leads, epoch {epoch}", self.id));
                    self.leader = Some(Leader::new(env, io, &self.id, epoch, now, &self.beats));
                }
                ElectionEffect::Lost => {
                    notes.trace.push(format!("{} lost the lease", self.id));
                    self.leader = None;
                }
                ElectionEffect::Epoch(epoch) => self.worker.handle_lease_epoch(epoch),
                ElectionEffect::Report(e) => notes.reports.push(e.to_string()),
                ElectionEffect::Settled | ElectionEffect::Valid(_) => {}
            }
        }
    }
}
