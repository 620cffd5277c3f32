//! One worker's own side, as a pure state machine: heartbeats (which also
//! renew its ID), self-fencing, and which published assignments to apply.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::store::Revision;
use crate::wire::{AssignmentRecord, WorkerRecord};
use crate::{Assignment, Partition};

/// What the heartbeat thread should write or read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BeatAction {
    /// `update(own key, record, revision)`.
    Update {
        /// The record.
        record: WorkerRecord,
        /// Expected revision of the own key.
        revision: Revision,
    },
    /// `create(own key, record)`: the key expired or was deleted.
    Create(WorkerRecord),
    /// Read the own key and report it with [`WorkerCore::own_key_read`].
    ReadOwnKey,
}

/// Outcome of a heartbeat write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BeatOutcome {
    /// Written at this revision.
    Written(Revision),
    /// The key is not at the expected revision (or exists, for a create).
    Conflict,
    /// Timed out or failed; it may have been written.
    Unknown,
}

/// What the worker's shell must do after an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WorkerEvent {
    /// Make this the current assignment and run the callbacks; report
    /// [`WorkerCore::applied`] when they return.
    Apply(Assignment),
    /// Heartbeats are failing: release everything now (the assignment given
    /// is empty), enter `Degraded`.
    Fenced(Assignment),
    /// Heartbeats are failing but the assignment is kept (opt-in
    /// availability mode): enter `Degraded`.
    Degraded,
    /// A record that changes nothing but the partitions announced as
    /// incoming: tell `on_prepare` of the new ones (possibly none), then
    /// report [`WorkerCore::applied`] for `version`.
    Prepare {
        /// The record's version.
        version: u64,
        /// Partitions announced for the first time.
        partitions: Vec<Partition>,
    },
    /// A heartbeat got through again after a fence or an outage.
    Recovered,
    /// Another process holds this worker ID now. Fatal.
    IdLost,
}

/// How long after entering `Degraded` the `n`-th outage alert is due (the
/// first at once, then 30 s, 2 min, 5 min, 10 min, and every 10 min after).
pub(crate) fn degraded_alert_at(n: u32) -> Duration {
    const STEPS: [u64; 5] = [0, 30, 120, 300, 600];
    match STEPS.get(n as usize) {
        Some(s) => Duration::from_secs(*s),
        None => Duration::from_secs(600 * u64::from(n - 3)),
    }
}

/// The worker-side state machine.
#[derive(Debug)]
pub(crate) struct WorkerCore {
    instance: String,
    incarnation: u32,
    seq: u64,
    revision: Option<Revision>,
    applied: u64,
    /// The highest version handed out with `Apply` (heartbeats report it:
    /// a leader that finds the store forgot numbers on above it).
    told: u64,
    current: Assignment,
    leaving: bool,
    host: String,
    pid: u32,
    /// Placement labels and capacity, carried in every heartbeat.
    labels: BTreeMap<String, String>,
    capacity: u32,
    /// Partitions the latest applied record announced as incoming, and
    /// those announced for the first time by a record that also changed
    /// the assignment (taken with [`take_incoming`](Self::take_incoming)).
    announced: BTreeSet<String>,
    fresh: Vec<Partition>,
    /// An assignment of this incarnation was handed out with `Apply`: only
    /// then may a record bring nothing but news (the first one must be
    /// installed, even when empty, for the worker to count as assigned).
    installed: bool,
    interval: Duration,
    fence_after: Duration,
    keep_on_outage: bool,
    last_confirmed: Instant,
    next_beat: Instant,
    in_flight: bool,
    degraded: bool,
    fenced: bool,
    suspended: bool,
    /// The newest leader epoch seen in the lease: records of older leaders
    /// are ignored (a deposed leader's late write).
    min_epoch: u64,
    /// The lease bucket was lost since the current assignment was applied:
    /// epochs started again, so only versions (which a leader keeps above
    /// what workers applied) say which record is newer.
    lease_reset: bool,
    /// The last record ignored as older than the lease: looked at again if
    /// the lease bucket turns out to have been lost.
    ignored: Option<AssignmentRecord>,
}

impl WorkerCore {
    /// A worker whose ID was just claimed at `revision`, at `now`.
    pub(crate) fn new(
        instance: &str,
        revision: Revision,
        now: Instant,
        interval: Duration,
        fence_after: Duration,
        keep_on_outage: bool,
    ) -> Self {
        WorkerCore {
            instance: instance.to_string(),
            incarnation: 0,
            seq: 0,
            revision: Some(revision),
            applied: 0,
            told: 0,
            current: Assignment::default(),
            leaving: false,
            host: std::env::var("HOSTNAME").unwrap_or_default(),
            pid: std::process::id(),
            labels: BTreeMap::new(),
            capacity: 1,
            announced: BTreeSet::new(),
            fresh: Vec::new(),
            installed: false,
            interval,
            fence_after,
            keep_on_outage,
            last_confirmed: now,
            next_beat: now,
            in_flight: false,
            degraded: false,
            fenced: false,
            suspended: false,
            min_epoch: 0,
            lease_reset: false,
            ignored: None,
        }
    }

    /// The record this worker writes now.
    pub(crate) fn record(&self) -> WorkerRecord {
        WorkerRecord {
            instance: self.instance.clone(),
            incarnation: self.incarnation,
            seq: self.seq,
            applied: self.applied,
            told: self.told.max(self.applied),
            leaving: self.leaving,
            host: self.host.clone(),
            pid: self.pid,
            labels: self.labels.clone(),
            capacity: self.capacity,
        }
    }

    /// The labels and capacity this worker announces to the leader.
    pub(crate) fn describe(&mut self, labels: BTreeMap<String, String>, capacity: u32) {
        self.labels = labels;
        self.capacity = capacity;
    }

    /// The assignment in force (what `Manager::assignment` returns).
    pub(crate) fn current(&self) -> &Assignment {
        &self.current
    }

    /// The last version whose callbacks returned.
    /// Records addressed to another incarnation are never applied.
    pub(crate) fn incarnation(&self) -> u32 {
        self.incarnation
    }

    pub(crate) fn applied_version(&self) -> u64 {
        self.applied
    }

    /// Whether the worker is degraded (cannot confirm its heartbeat).
    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded
    }

    /// Announce a graceful departure in the next heartbeat (sent at once).
    pub(crate) fn leave(&mut self, now: Instant) {
        self.leaving = true;
        self.next_beat = now;
    }

    /// Whether the worker, leaving, holds nothing any more.
    pub(crate) fn drained(&self) -> bool {
        self.leaving && self.current.is_empty() && self.applied >= self.current.version()
    }

    /// A value was seen under this worker's assignment key (`None`: deleted).
    pub(crate) fn on_assignment(
        &mut self,
        record: Option<&AssignmentRecord>,
    ) -> Option<WorkerEvent> {
        let Some(record) = record else {
            // The leader cleared our key: it declared us dead. Whatever we
            // hold may be granted elsewhere, so release it and start a new
            // incarnation. Holding nothing, there is nothing to do: the
            // leader sees our next heartbeat as a join.
            if self.current.is_empty() {
                return None;
            }
            return self.fence_now(true);
        };
        if record.instance != self.instance || record.incarnation != self.incarnation {
            return None;
        }
        if record.epoch < self.min_epoch {
            self.ignored = Some(record.clone());
            return None;
        }
        let newer = if self.lease_reset {
            record.version > self.current.version()
        } else {
            (record.epoch, record.version) > (self.current.epoch(), self.current.version())
        };
        if !newer {
            return None;
        }
        if self.fenced {
            // Our heartbeat is unconfirmed: the leader may have seen one that
            // landed without our knowing, and may have declared us dead since
            // and given the work elsewhere (its delete of our key can still
            // be on its way). Nothing addressed to this incarnation is
            // applied; the recovery starts a new one.
            return None;
        }
        let assignment = Assignment::new(
            record.version,
            record.epoch,
            Some(record.reason),
            record
                .partitions
                .iter()
                .map(|p| (Partition::with_weight(p.id.clone(), p.weight), p.token)),
        );
        // A new leader re-stamps every key with its epoch (see
        // `core::fence`): same version, same partitions, nothing to apply.
        let unchanged = assignment.iter().eq(self.current.iter());
        let restamped = unchanged && assignment.version() == self.current.version();
        // Versions never go back, whatever the epoch: a leader numbers on
        // above every version workers report being told, so a lower one (or
        // the same one with other partitions) under a newer epoch is a
        // record the store kept from before it forgot, re-stamped by a new
        // leader — not news. That leader counts this worker as holding
        // anything until it applies a version of its own.
        let version = assignment.version();
        if version < self.current.version() || (version == self.current.version() && !unchanged) {
            return None;
        }
        let fresh: Vec<Partition> = record
            .incoming
            .iter()
            .filter(|id| !self.announced.contains(*id))
            .map(|id| Partition::new(id.clone()))
            .collect();
        let announced: BTreeSet<String> = record.incoming.iter().cloned().collect();
        let announcement = announced != self.announced;
        self.announced = announced;
        self.current = assignment.clone();
        self.lease_reset = false;
        self.ignored = None;
        if restamped {
            return None;
        }
        if unchanged && announcement && self.installed {
            return Some(WorkerEvent::Prepare {
                version: assignment.version(),
                partitions: fresh,
            });
        }
        self.fresh = fresh;
        self.installed = true;
        self.told = self.told.max(assignment.version());
        Some(WorkerEvent::Apply(assignment))
    }

    /// Partitions first announced as incoming by the record just applied
    /// (an [`Apply`](WorkerEvent::Apply)).
    pub(crate) fn take_incoming(&mut self) -> Vec<Partition> {
        std::mem::take(&mut self.fresh)
    }

    /// The callbacks for `version` returned: acknowledge it in a heartbeat at
    /// once, so the leader can hand released partitions over.
    pub(crate) fn applied(&mut self, now: Instant, version: u64) {
        if version > self.applied {
            self.applied = version;
            self.next_beat = now;
        }
    }

    fn fence_now(&mut self, always: bool) -> Option<WorkerEvent> {
        if self.fenced && !always {
            return None;
        }
        self.fenced = true;
        self.degraded = true;
        self.incarnation += 1;
        self.announced.clear();
        self.installed = false;
        // The leader reads a new incarnation as "holds nothing" and may grant
        // our partitions elsewhere at once: announce it only after the
        // release callback returned (the shell resumes us then).
        self.suspended = true;
        self.next_beat = self.next_beat.min(self.last_confirmed + self.interval);
        let released = Assignment::new(
            self.current.version(),
            self.current.epoch(),
            self.current.reason(),
            [],
        );
        self.current = released.clone();
        Some(WorkerEvent::Fenced(released))
    }

    /// A leader epoch seen in the lease: from now on, records written by
    /// older leaders are ignored. This covers what revision fencing cannot:
    /// a deposed leader's late *create* of a key that did not exist yet.
    pub(crate) fn observe_lease_epoch(&mut self, epoch: u64) {
        self.min_epoch = self.min_epoch.max(epoch);
    }

    /// The lease bucket was recreated or rolled back: epochs start again,
    /// and a minimum from before would make this worker ignore every new
    /// leader. The window this reopens (a deposed leader's late create)
    /// needs a request delayed across the store's loss.
    /// A record ignored as too old before is looked at again.
    pub(crate) fn reset_lease_epoch(&mut self, epoch: u64) -> Option<WorkerEvent> {
        self.min_epoch = epoch;
        self.lease_reset = true;
        let ignored = self.ignored.take()?;
        self.on_assignment(Some(&ignored))
    }

    /// Checks the self-fencing deadline.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<WorkerEvent> {
        if self.degraded || now < self.last_confirmed + self.fence_after {
            return None;
        }
        if self.keep_on_outage {
            self.degraded = true;
            return Some(WorkerEvent::Degraded);
        }
        self.fence_now(false)
    }

    /// Whether heartbeats are suspended.
    pub(crate) fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// Stops heartbeats (a release callback is stuck past the handoff
    /// timeout): the leader then declares this worker dead once its lease
    /// expires, and only then grants its partitions elsewhere.
    pub(crate) fn suspend(&mut self) {
        self.suspended = true;
    }

    /// Heartbeats again (the stuck callback returned).
    pub(crate) fn resume(&mut self, now: Instant) {
        if self.suspended {
            self.suspended = false;
            self.next_beat = now;
        }
    }

    /// The heartbeat write to perform now, if any.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<BeatAction> {
        if self.in_flight || self.suspended || now < self.next_beat {
            return None;
        }
        self.in_flight = true;
        self.seq += 1;
        Some(match self.revision {
            Some(revision) => BeatAction::Update {
                record: self.record(),
                revision,
            },
            None => BeatAction::ReadOwnKey,
        })
    }

    /// The result of a write from [`poll`](Self::poll), sent at `sent`.
    pub(crate) fn on_beat(
        &mut self,
        now: Instant,
        sent: Instant,
        outcome: BeatOutcome,
    ) -> Option<WorkerEvent> {
        self.in_flight = false;
        match outcome {
            BeatOutcome::Written(revision) => {
                self.revision = Some(revision);
                self.last_confirmed = self.last_confirmed.max(sent);
                self.next_beat = sent + self.interval;
                if self.degraded {
                    if self.fenced {
                        // Void whatever was addressed to the fenced
                        // incarnation (see `on_assignment`).
                        self.incarnation += 1;
                        self.next_beat = now;
                    }
                    self.degraded = false;
                    self.fenced = false;
                    return Some(WorkerEvent::Recovered);
                }
                None
            }
            BeatOutcome::Conflict => {
                self.revision = None;
                self.next_beat = now;
                None
            }
            BeatOutcome::Unknown => {
                // Try again soon, but not in a tight loop.
                self.next_beat = now + (self.interval / 4).max(Duration::from_millis(10));
                None
            }
        }
    }

    /// The own key as read after a conflict (`None`: absent): decides between
    /// re-creating it, adopting a write whose answer was lost, and giving up
    /// the ID.
    pub(crate) fn own_key_read(
        &mut self,
        now: Instant,
        found: Option<(Revision, WorkerRecord)>,
    ) -> Result<Option<BeatAction>, WorkerEvent> {
        self.in_flight = false;
        match found {
            None => {
                self.in_flight = true;
                Ok(Some(BeatAction::Create(self.record())))
            }
            Some((revision, record)) if record.instance == self.instance => {
                self.revision = Some(revision);
                self.next_beat = now;
                Ok(None)
            }
            Some(_) => Err(WorkerEvent::IdLost),
        }
    }

    /// A read of the own key failed; retry later.
    pub(crate) fn read_failed(&mut self, now: Instant) {
        self.in_flight = false;
        self.next_beat = now + (self.interval / 4).max(Duration::from_millis(10));
    }

    /// When to call `poll`/`tick` next, at the latest (`None`: nothing is
    /// due until an input comes).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let fence = (!self.degraded).then_some(self.last_confirmed + self.fence_after);
        // While suspended nothing is sent until `resume`, which comes with an
        // input that wakes the shell anyway.
        let beat = (!self.suspended).then_some(self.next_beat);
        match (beat, fence) {
            (Some(b), Some(f)) => Some(b.min(f)),
            (b, f) => b.or(f),
        }
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
