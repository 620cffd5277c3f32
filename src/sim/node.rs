//! One simulated process: the heartbeat, election and leader "threads" of a
//! manager, each stepped like its runtime counterpart, over the process's
//! own client view of the store. Callbacks take virtual time.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use crate::core::lease::{LeaseAction, LeaseCore, LeaseEvent, WriteOutcome};
use crate::core::worker::{BeatAction, BeatOutcome, WorkerCore, WorkerEvent};
use crate::names::LEADER_KEY;
use crate::store::{Watch, WatchEvent};
use crate::wire::{self, AssignmentRecord, WorkerRecord};
use crate::Assignment;

use super::leader::Leader;
use super::ops::{Answer, Io, Kind, Thread};
use super::rng::Rng;
use super::Env;

/// A queued or running `on_assignment_changed` call.
struct Callback {
    version: u64,
    partitions: BTreeSet<String>,
    queued: Instant,
    done_at: Instant,
}

/// A process that holds its worker ID.
pub(crate) struct Running {
    pub id: String,
    pub worker: WorkerCore,
    pub lease: LeaseCore,
    assign_watch: Option<Watch>,
    lease_watch: Option<Watch>,
    watch_retry: Instant,
    /// `Some` while the leader thread runs.
    pub leader: Option<Leader>,
    /// A term whose leader thread is still taking office: epoch, next try.
    office: Option<(u64, Instant)>,
    callbacks: VecDeque<Callback>,
    completed: BTreeSet<String>,
    last_apply: u64,
    /// The process stopped itself (its ID was taken).
    pub quit: bool,
}

/// What a step tells the world.
#[derive(Default)]
pub(crate) struct Notes {
    pub violations: Vec<String>,
    pub trace: Vec<String>,
    /// The owned set of this process changed.
    pub owned_changed: bool,
}

impl Running {
    pub fn new(env: &Env, id: String, instance: &str, revision: u64, now: Instant) -> Self {
        let c = &env.config;
        Running {
            lease: LeaseCore::new(&id, instance, c.election_ttl),
            worker: WorkerCore::new(
                instance,
                revision,
                now,
                c.heartbeat_interval,
                c.self_fence_after(),
                false,
            ),
            id,
            assign_watch: None,
            lease_watch: None,
            watch_retry: now,
            leader: None,
            office: None,
            callbacks: VecDeque::new(),
            completed: BTreeSet::new(),
            last_apply: 0,
            quit: false,
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
        self.callbacks_step(env, now, notes);
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
        if let Some((epoch, at)) = self.office {
            if now >= at {
                self.take_office(env, io, epoch, now, notes);
            }
        }
        io.lease_valid_until = valid_until;
        match &mut self.leader {
            Some(leader) => {
                leader.step(env, io, &self.id, valid_until, now);
            }
            // A write sent by a leader thread that has ended since still
            // reaches the store.
            None => drop(io.due(&self.id, Thread::Leader, now)),
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

    fn callbacks_step(&mut self, env: &Env, now: Instant, notes: &mut Notes) {
        while self.callbacks.front().is_some_and(|c| c.done_at <= now) {
            let Some(done) = self.callbacks.pop_front() else {
                break;
            };
            self.completed = done.partitions;
            notes.owned_changed = true;
            if self.callbacks.is_empty() {
                self.worker.resume(now);
            }
            self.worker.applied(now, done.version);
        }
        if let Some(front) = self.callbacks.front() {
            if now >= front.queued + env.config.handoff_timeout && !self.worker.is_suspended() {
                self.worker.suspend();
            }
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
            queued: now,
            done_at: start + rng.duration(env.apply_time.0, env.apply_time.1),
        });
        notes.owned_changed = true;
    }

    fn handle(
        &mut self,
        env: &Env,
        rng: &mut Rng,
        ev: WorkerEvent,
        now: Instant,
        notes: &mut Notes,
    ) {
        match ev {
            WorkerEvent::Apply(a) => {
                if a.version() <= self.last_apply {
                    notes.violations.push(format!(
                        "{} applied version {} after version {}",
                        self.id,
                        a.version(),
                        self.last_apply
                    ));
                }
                self.last_apply = self.last_apply.max(a.version());
                self.install(env, rng, &a, now, notes);
            }
            WorkerEvent::Fenced(released) => {
                notes.trace.push(format!("{} fenced itself", self.id));
                self.install(env, rng, &released, now, notes);
            }
            WorkerEvent::IdLost => {
                notes.trace.push(format!("{} lost its ID: quits", self.id));
                if let Some(WorkerEvent::Fenced(released)) = self.worker.on_assignment(None) {
                    self.install(env, rng, &released, now, notes);
                }
                self.quit = true;
            }
            WorkerEvent::Degraded | WorkerEvent::Recovered => {}
        }
    }

    fn beat_step(
        &mut self,
        env: &Env,
        io: &mut Io,
        rng: &mut Rng,
        now: Instant,
        notes: &mut Notes,
    ) {
        let mut next = None;
        if let Some((kind, answer, sent)) = io.due(&self.id, Thread::Beat, now) {
            next = self.beat_answer(env, rng, kind, answer, sent, now, notes);
        }
        if io.blocked(Thread::Beat) || self.quit {
            return;
        }
        // As `runtime::worker`: fence before acting on what queued up.
        if let Some(ev) = self.worker.tick(now) {
            self.handle(env, rng, ev, now, notes);
        }
        let events: Vec<WatchEvent> = self
            .assign_watch
            .as_ref()
            .map(|w| w.events().try_iter().collect())
            .unwrap_or_default();
        for ev in events {
            let event = match ev {
                WatchEvent::Put(entry) => wire::decode::<AssignmentRecord>(
                    io.stores.assignments.bucket(),
                    &entry.key,
                    &entry.value,
                )
                .ok()
                .and_then(|r| self.worker.on_assignment(Some(&r))),
                WatchEvent::Delete { .. } => self.worker.on_assignment(None),
                _ => None,
            };
            if let Some(event) = event {
                self.handle(env, rng, event, now, notes);
            }
        }
        if let Some(ev) = self.worker.tick(now) {
            self.handle(env, rng, ev, now, notes);
        }
        let mut action = next.or_else(|| self.worker.poll(now));
        // A read may lead to a create: at most a few operations per step.
        for _ in 0..4 {
            let Some(a) = action.take() else { break };
            let Some((kind, answer)) = io.issue(&self.id, Thread::Beat, Kind::Beat(a), now) else {
                break;
            };
            action = self.beat_answer(env, rng, kind, answer, now, now, notes);
            if self.quit {
                return;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn beat_answer(
        &mut self,
        env: &Env,
        rng: &mut Rng,
        kind: Kind,
        answer: Answer,
        sent: Instant,
        now: Instant,
        notes: &mut Notes,
    ) -> Option<BeatAction> {
        match (kind, answer) {
            (Kind::Beat(BeatAction::ReadOwnKey), Answer::Get(found)) => {
                let found = match found {
                    Ok(found) => found,
                    Err(_) => {
                        self.worker.read_failed(now);
                        return None;
                    }
                };
                let found = found.and_then(|e| {
                    wire::decode::<WorkerRecord>(io_bucket(), &e.key, &e.value)
                        .ok()
                        .map(|r| (e.revision, r))
                });
                match self.worker.own_key_read(now, found) {
                    Ok(next) => next,
                    Err(ev) => {
                        self.handle(env, rng, ev, now, notes);
                        None
                    }
                }
            }
            (_, answer) => {
                let outcome = match answer.write() {
                    Ok(rev) => BeatOutcome::Written(rev),
                    Err(e) if e.is_conflict() => BeatOutcome::Conflict,
                    Err(_) => BeatOutcome::Unknown,
                };
                if let Some(ev) = self.worker.on_beat(now, sent, outcome) {
                    self.handle(env, rng, ev, now, notes);
                }
                None
            }
        }
    }

    fn lease_step(&mut self, env: &Env, io: &mut Io, now: Instant, notes: &mut Notes) {
        let mut events = Vec::new();
        if let Some((kind, answer, sent)) = io.due(&self.id, Thread::Lease, now) {
            events.extend(self.lease_answer(kind, answer, sent, now));
        }
        if !io.blocked(Thread::Lease) {
            let seen: Vec<WatchEvent> = self
                .lease_watch
                .as_ref()
                .map(|w| w.events().try_iter().collect())
                .unwrap_or_default();
            for ev in seen {
                match ev {
                    WatchEvent::Put(entry) => {
                        let (rec, _) = wire::lease_or_nobody(
                            io.stores.leader.bucket(),
                            &entry.key,
                            &entry.value,
                            entry.revision,
                        );
                        events.extend(self.lease.observe(now, entry.revision, Some(rec)));
                    }
                    WatchEvent::Delete { revision, .. } => {
                        events.extend(self.lease.observe(now, revision, None))
                    }
                    WatchEvent::Synced => {}
                }
            }
            events.extend(self.lease.tick(now));
            if let Some(action) = self.lease.poll(now) {
                if let Some((kind, answer)) =
                    io.issue(&self.id, Thread::Lease, Kind::Lease(action), now)
                {
                    events.extend(self.lease_answer(kind, answer, now, now));
                }
            }
        }
        for ev in events {
            match ev {
                LeaseEvent::Acquired { epoch } => {
                    self.worker.observe_lease_epoch(epoch);
                    notes
                        .trace
                        .push(format!("{} leads, epoch {epoch}", self.id));
                    self.take_office(env, io, epoch, now, notes);
                }
                LeaseEvent::Lost => {
                    notes.trace.push(format!("{} lost the lease", self.id));
                    self.leader = None;
                    self.office = None;
                }
                LeaseEvent::Epoch(epoch) => self.worker.observe_lease_epoch(epoch),
            }
        }
    }

    fn take_office(&mut self, env: &Env, io: &Io, epoch: u64, now: Instant, notes: &mut Notes) {
        self.leader = Leader::take_office(env, io, &self.id, epoch, now);
        self.office = match self.leader {
            Some(_) => None,
            None => {
                notes
                    .trace
                    .push(format!("{}: leader cannot take office yet", self.id));
                Some((epoch, now + env.config.heartbeat_interval / 4))
            }
        };
    }

    fn lease_answer(
        &mut self,
        kind: Kind,
        answer: Answer,
        sent: Instant,
        now: Instant,
    ) -> Vec<LeaseEvent> {
        let Kind::Lease(action) = kind else {
            return Vec::new();
        };
        match (&action, answer) {
            (LeaseAction::Read, Answer::Get(Ok(found))) => {
                let (revision, seen) = match found {
                    None => (0, None),
                    Some(e) => {
                        let (rec, _) =
                            wire::lease_or_nobody("leader", &e.key, &e.value, e.revision);
                        (e.revision, Some(rec))
                    }
                };
                let mut evs = self
                    .lease
                    .on_result(now, sent, &action, WriteOutcome::Unknown);
                evs.extend(self.lease.observe(now, revision, seen));
                evs
            }
            (LeaseAction::Read, _) => {
                self.lease.read_failed(now);
                Vec::new()
            }
            (_, answer) => {
                let outcome = match answer.write() {
                    Ok(rev) => WriteOutcome::Written(rev),
                    Err(e) if e.is_conflict() => WriteOutcome::Conflict,
                    Err(_) => WriteOutcome::Unknown,
                };
                self.lease.on_result(now, sent, &action, outcome)
            }
        }
    }
}

fn io_bucket() -> &'static str {
    "workers"
}
