//! A worker's own side as a sans-IO node: heartbeats that renew its ID
//! ([`WorkerCore`]), the assignments published for it, self-fencing, the
//! watchdog on callbacks stuck past the handoff timeout, escalating outage
//! alerts, and the graceful departure. The heartbeat thread drives it; the
//! simulator drives the same node for every simulated process.
//!
//! It follows the node contract ([`Node`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::core::node::Node;
use crate::core::ops::{Bucket, Op, Reply};
use crate::core::worker::{degraded_alert_at, BeatAction, BeatOutcome, WorkerCore, WorkerEvent};
use crate::store::{Revision, WatchEvent};
use crate::wire::{self, AssignmentRecord, WorkerRecord};
use crate::{Assignment, Config, Error, Partition};

/// What the heartbeat node tells its shell.
#[derive(Debug)]
pub(crate) enum HeartbeatEffect {
    /// Make this the current assignment and queue its callback; call
    /// [`HeartbeatInput::Applied`] when the callback returns.
    /// `has_assignment` is false for a release by self-fencing.
    Install {
        /// The new assignment.
        assignment: Assignment,
        /// Whether the worker holds a leader-given assignment now.
        has_assignment: bool,
    },
    /// Tell `on_prepare` that these partitions are coming (their previous
    /// owner still holds them), unless `until` has passed by then; with a
    /// `version`, send [`HeartbeatInput::Applied`] for it afterwards
    /// (the record changed nothing else).
    Prepare {
        /// The partitions on their way.
        partitions: Vec<Partition>,
        /// After this the news is stale (the handoff timeout): skipped.
        until: Instant,
        /// The version to acknowledge, if the record brought only this.
        version: Option<u64>,
    },
    /// Heartbeats fail (`true`) or got through again.
    Degraded(bool),
    /// A heartbeat write was confirmed at this revision (remembered, for a
    /// leader term to date the heartbeats it replays).
    Beat(crate::store::Revision),
    /// A heartbeat write failed.
    BeatFailed,
    /// Leaving, the worker holds nothing any more.
    Drained,
    /// Worth an `on_error` report.
    Report(Error),
    /// A heartbeat was stored at a revision at or below one of ours
    /// before: the workers bucket went back (rolled back, or recreated), so
    /// revisions — and the lease's epochs — are being issued again. The
    /// node has already forgotten the lease epochs it saw; the shell reports
    /// it and tells the rest of the worker.
    StoreWentBack,
    /// Another process holds this worker ID: the manager must stop.
    IdLost,
    /// After [`HeartbeatInput::Quit`]: everything released and the key
    /// deleted (or tried): the node is done.
    Exited,
}

/// What the shell and the other nodes tell the heartbeat node.
#[derive(Debug)]
pub(crate) enum HeartbeatInput {
    /// Announce the departure: the leader moves this worker's partitions
    /// away (revoke before grant); [`HeartbeatEffect::Drained`] follows.
    Leave,
    /// Leave now: release whatever is still held, delete the key so the
    /// leader forgets this worker at once, then [`HeartbeatEffect::Exited`].
    Quit,
    /// The callback of the oldest queued assignment (this version) returned.
    Applied(u64),
    /// A leader epoch seen in the lease: records of older leaders are
    /// ignored from now on.
    LeaseEpoch(u64),
    /// The store forgot the lease bucket (its revisions start again): the
    /// epochs seen before no longer count; this is the newest seen since.
    LeaseReset(u64),
}

#[derive(Debug)]
enum InFlight {
    Beat {
        action: BeatAction,
        sent: Instant,
    },
    /// Deleting the own key on the way out.
    Exit,
}

/// One worker's heartbeat and assignment side.
#[derive(Debug)]
pub(crate) struct HeartbeatNode {
    id: String,
    core: WorkerCore,
    workers_bucket: String,
    assignments_bucket: String,
    fence_after: Duration,
    handoff_timeout: Duration,
    now: Instant,
    in_flight: Option<InFlight>,
    effects: VecDeque<HeartbeatEffect>,
    /// When each assignment callback still running was queued.
    callbacks: VecDeque<Instant>,
    /// Since when heartbeats fail, and how many alerts were raised.
    degraded: Option<(Instant, u32)>,
    drained: bool,
    /// Leaving for good: release, delete the key, exit.
    quitting: bool,
    done: bool,
    /// `in_flight` holds an operation not yet handed out (a create that a
    /// read of the own key asked for).
    follow_up: bool,
    /// The highest revision a write of ours was stored at.
    highest_written: Revision,
    /// The store went back: the assignments watch is to be opened again.
    rewatch: bool,
}

impl HeartbeatNode {
    /// The node of worker `id`, whose ID was claimed at `revision`.
    pub(crate) fn new(
        id: &str,
        instance: &str,
        revision: Revision,
        config: &Config,
        buckets: (&str, &str),
        now: Instant,
    ) -> Self {
        HeartbeatNode {
            id: id.to_string(),
            core: WorkerCore::new(
                instance,
                revision,
                now,
                config.heartbeat_interval,
                config.self_fence_after(),
                config.keep_assignment_on_outage,
            ),
            workers_bucket: buckets.0.to_string(),
            assignments_bucket: buckets.1.to_string(),
            fence_after: config.self_fence_after(),
            handoff_timeout: config.handoff_timeout,
            now,
            in_flight: None,
            effects: VecDeque::new(),
            callbacks: VecDeque::new(),
            degraded: None,
            drained: false,
            quitting: false,
            done: false,
            follow_up: false,
            highest_written: revision,
            rewatch: false,
        }
    }

    /// The labels and capacity every heartbeat carries to the leader.
    pub fn describe(&mut self, labels: std::collections::BTreeMap<String, String>, capacity: u32) {
        self.core.describe(labels, capacity);
    }

    /// The assignment version this worker has applied.
    pub(crate) fn applied_version(&self) -> u64 {
        self.core.applied_version()
    }

    /// The incarnation records must be addressed to (see `WorkerCore`).
    pub(crate) fn incarnation(&self) -> u32 {
        self.core.incarnation()
    }

    /// The version of the assignment in force (installed, maybe still
    /// being applied): no record of a lower version is ever applied.
    pub(crate) fn current_version(&self) -> u64 {
        self.core.current().version()
    }

    /// Our writes are sequential, so their revisions rise while the store
    /// remembers. One at or below an earlier one: the store went back, and
    /// the lease epochs seen before (kept as the minimum a leader's record
    /// must carry) would make this worker ignore every new leader.
    fn check_went_back(&mut self, revision: Revision) {
        if revision <= self.highest_written {
            log::warn!(
                "[{}] heartbeat stored at revision {revision}, not above {}: the store went back; lease epochs seen before are forgotten",
                self.id,
                self.highest_written
            );
            self.effects.push_back(HeartbeatEffect::StoreWentBack);
            // The assignments bucket most likely went back with it: the
            // records written at the revisions issued again (a new
            // leader's) come only through a new watch.
            self.rewatch = true;
            if let Some(event) = self.core.reset_lease_epoch(0) {
                self.on_event(event);
            }
        }
        self.highest_written = revision;
    }

    fn quit(&mut self) {
        if self.done || self.quitting {
            return;
        }
        self.quitting = true;
        if !self.core.current().is_empty() {
            if let Some(WorkerEvent::Fenced(released)) = self.core.on_assignment(None) {
                self.install(released, false);
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        if self.done || self.quitting {
            return;
        }
        if let Some(ev) = self.core.tick(now) {
            self.on_event(ev);
        }
    }

    fn on_event(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::Apply(a) => {
                log::info!(
                    "[{}] assignment v{} ({} partitions, {})",
                    self.id,
                    a.version(),
                    a.len(),
                    a.reason().map(|r| r.to_string()).unwrap_or_default()
                );
                self.install(a, true);
                let partitions = self.core.take_incoming();
                if !partitions.is_empty() {
                    self.prepare(partitions, None);
                }
            }
            WorkerEvent::Prepare {
                version,
                partitions,
            } => {
                log::debug!("[{}] v{version}: {} incoming", self.id, partitions.len());
                self.callbacks.push_back(self.now);
                self.prepare(partitions, Some(version));
            }
            WorkerEvent::Fenced(released) => {
                log::warn!(
                    "[{}] heartbeat not confirmed: released all partitions",
                    self.id
                );
                self.effects.push_back(HeartbeatEffect::Degraded(true));
                self.install(released, false);
            }
            WorkerEvent::Degraded => {
                log::warn!(
                    "[{}] heartbeat not confirmed: keeping partitions (degraded)",
                    self.id
                );
                self.effects.push_back(HeartbeatEffect::Degraded(true));
            }
            WorkerEvent::Recovered => {
                log::info!("[{}] heartbeat confirmed again", self.id);
                self.effects.push_back(HeartbeatEffect::Degraded(false));
            }
            WorkerEvent::IdLost => {
                if let Some(WorkerEvent::Fenced(released)) = self.core.on_assignment(None) {
                    self.install(released, false);
                }
                self.effects
                    .push_back(HeartbeatEffect::Report(Error::WorkerIdLost {
                        worker: self.id.clone(),
                    }));
                self.effects.push_back(HeartbeatEffect::IdLost);
                self.done = true;
            }
        }
    }

    fn prepare(&mut self, partitions: Vec<Partition>, version: Option<u64>) {
        self.effects.push_back(HeartbeatEffect::Prepare {
            partitions,
            until: self.now + self.handoff_timeout,
            version,
        });
    }

    fn install(&mut self, assignment: Assignment, has_assignment: bool) {
        self.callbacks.push_back(self.now);
        self.effects.push_back(HeartbeatEffect::Install {
            assignment,
            has_assignment,
        });
    }

    /// What follows every input: the callback watchdog, outage alerts, the
    /// end of a drain.
    fn after(&mut self, now: Instant) {
        if self.done {
            return;
        }
        // A callback stuck past the handoff timeout: stop heartbeating, so
        // the leader grants what it holds elsewhere only after its lease
        // expired.
        if let Some(since) = self.callbacks.front().copied() {
            let waited = now.saturating_duration_since(since);
            if waited >= self.handoff_timeout && !self.core.is_suspended() {
                self.core.suspend();
                self.effects
                    .push_back(HeartbeatEffect::Report(Error::HandoffTimeout {
                        worker: self.id.clone(),
                        waited,
                    }));
            }
        }
        match (self.core.is_degraded(), &mut self.degraded) {
            (false, d) => *d = None,
            (true, None) => self.degraded = Some((now, 0)),
            (true, Some(_)) => {}
        }
        if let Some((since, n)) = &mut self.degraded {
            if now >= *since + degraded_alert_at(*n) {
                *n += 1;
                let for_ = now.saturating_duration_since(*since) + self.fence_after;
                self.effects
                    .push_back(HeartbeatEffect::Report(Error::Degraded { for_ }));
            }
        }
        // Drained once the release callback returned too: the manager then
        // deletes the key, and the leader grants the partitions at once.
        if !self.drained && self.core.drained() && self.callbacks.is_empty() {
            self.drained = true;
            self.effects.push_back(HeartbeatEffect::Drained);
        }
    }

    fn beat_op(&self, action: &BeatAction) -> Op {
        let (bucket, key) = (Bucket::Workers, self.id.clone());
        match action {
            BeatAction::Update { record, revision } => Op::Update {
                bucket,
                key,
                value: wire::encode(record),
                revision: *revision,
            },
            BeatAction::Create(record) => Op::Create {
                bucket,
                key,
                value: wire::encode(record),
            },
            BeatAction::ReadOwnKey => Op::Get { bucket, key },
        }
    }
}

impl Node for HeartbeatNode {
    type Input = HeartbeatInput;
    type Effect = HeartbeatEffect;

    fn handle_input(&mut self, now: Instant, input: HeartbeatInput) {
        self.now = now;
        match input {
            HeartbeatInput::LeaseEpoch(epoch) => self.core.observe_lease_epoch(epoch),
            HeartbeatInput::LeaseReset(epoch) => {
                if let Some(event) = self.core.reset_lease_epoch(epoch) {
                    self.on_event(event);
                }
            }
            // Neither is followed by the watchdog or the alerts: the worker
            // is on its way out.
            HeartbeatInput::Leave => return self.core.leave(now),
            HeartbeatInput::Quit => return self.quit(),
            HeartbeatInput::Applied(version) => {
                self.callbacks.pop_front();
                if self.callbacks.is_empty() {
                    self.core.resume(now);
                }
                self.core.applied(now, version);
            }
        }
        self.after(now);
    }
    fn handle_watch(&mut self, now: Instant, ev: WatchEvent) {
        self.now = now;
        // Drained, the worker is on its way out (the shell quits next): a
        // grant that a leader made before it saw the departure is not
        // started, and the key is deleted without anything to release.
        if self.done || self.quitting || self.drained {
            return;
        }
        // After a freeze the fencing deadline may have passed: fence before
        // acting on anything that queued up meanwhile.
        self.tick(now);
        let event = match ev {
            WatchEvent::Put(entry) => {
                match wire::decode::<AssignmentRecord>(
                    &self.assignments_bucket,
                    &entry.key,
                    &entry.value,
                ) {
                    Ok(record) => self.core.on_assignment(Some(&record)),
                    Err(e) => {
                        self.effects.push_back(HeartbeatEffect::Report(e));
                        None
                    }
                }
            }
            // Holding nothing, the core ignores it.
            WatchEvent::Delete { .. } => self.core.on_assignment(None),
            WatchEvent::Synced => None,
        };
        if let Some(event) = event {
            self.on_event(event);
        }
        self.after(now);
    }

    fn handle_reply(&mut self, now: Instant, reply: Reply) {
        self.now = now;
        match self.in_flight.take() {
            None => {}
            Some(InFlight::Exit) => {
                if let Some(e) = reply.error() {
                    log::warn!("[{}] could not delete worker key: {e}", self.id);
                }
                self.done = true;
                self.effects.push_back(HeartbeatEffect::Exited);
            }
            Some(InFlight::Beat {
                action: BeatAction::ReadOwnKey,
                ..
            }) => match reply {
                Reply::Entry(Ok(found)) => {
                    let found = found.and_then(|entry| {
                        wire::decode::<WorkerRecord>(&self.workers_bucket, &entry.key, &entry.value)
                            .ok()
                            .map(|r| (entry.revision, r))
                    });
                    match self.core.own_key_read(now, found) {
                        Ok(Some(next)) => {
                            self.in_flight = Some(InFlight::Beat {
                                action: next,
                                sent: now,
                            });
                            // Issued by poll_op as the follow-up.
                            self.follow_up = true;
                        }
                        Ok(None) => {}
                        Err(ev) => self.on_event(ev),
                    }
                }
                _ => {
                    log::debug!("[{}] reading own key failed", self.id);
                    self.core.read_failed(now);
                }
            },
            Some(InFlight::Beat { sent, .. }) => {
                if let Reply::Written(Ok(rev)) = &reply {
                    self.check_went_back(*rev);
                }
                let outcome = match &reply {
                    Reply::Written(Ok(rev)) => BeatOutcome::Written(*rev),
                    Reply::Written(Err(e)) if e.is_conflict() => BeatOutcome::Conflict,
                    _ => BeatOutcome::Unknown,
                };
                if let Reply::Written(Ok(rev)) = &reply {
                    self.effects.push_back(HeartbeatEffect::Beat(*rev));
                } else {
                    log::debug!("[{}] heartbeat: {:?}", self.id, reply.error());
                    self.effects.push_back(HeartbeatEffect::BeatFailed);
                }
                if let Some(ev) = self.core.on_beat(now, sent, outcome) {
                    self.on_event(ev);
                }
            }
        }
        self.after(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.tick(now);
        self.after(now);
    }

    fn poll_op(&mut self, now: Instant) -> Option<Op> {
        self.now = now;
        if self.follow_up {
            // A read of the own key asked for a create at once.
            self.follow_up = false;
            if let Some(InFlight::Beat { action, .. }) = &self.in_flight {
                return Some(self.beat_op(action));
            }
        }
        if self.in_flight.is_some() || self.done {
            return None;
        }
        if self.quitting {
            self.in_flight = Some(InFlight::Exit);
            return Some(Op::Delete {
                bucket: Bucket::Workers,
                key: self.id.clone(),
                expected: None,
            });
        }
        self.tick(now);
        if self.done {
            return None;
        }
        let action = self.core.poll(now)?;
        let op = self.beat_op(&action);
        self.in_flight = Some(InFlight::Beat { action, sent: now });
        Some(op)
    }

    fn poll_effect(&mut self) -> Option<HeartbeatEffect> {
        self.effects.pop_front()
    }

    fn poll_rewatch(&mut self) -> bool {
        std::mem::take(&mut self.rewatch)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.done || self.quitting {
            return None;
        }
        let alert = self.degraded.map(|(since, n)| since + degraded_alert_at(n));
        // Once suspended there is nothing more to do at that deadline.
        let handoff = self
            .callbacks
            .front()
            .filter(|_| !self.core.is_suspended())
            .map(|since| *since + self.handoff_timeout);
        [self.core.next_deadline(), alert, handoff]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
#[path = "heartbeat_tests.rs"]
mod tests;
