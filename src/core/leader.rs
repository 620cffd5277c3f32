//! One leader term as a sans-IO node: take office (read the partition
//! source, replay the workers' heartbeats, read and re-stamp every published
//! key), then run the calculator and publish its decisions with fenced
//! writes, re-reading the source when asked or on schedule. The leader
//! thread drives it; the simulator drives the same node.
//!
//! It follows the node contract ([`Node`]). Reading the
//! partition source is user code, not KV: the node asks for it with
//! [`LeaderEffect::ReadSource`] and takes the answer as
//! [`LeaderInput::Source`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::calculator::{Calculator, Phase};
use crate::core::fence::Fence;
use crate::core::node::Node;
use crate::core::ops::{Op, Reply};

use crate::names::REFRESH_KEY;
use crate::store::{Revision, WatchEvent};
use crate::strategy::AssignmentStrategy;
use crate::wire::{self, AssignmentRecord, MetaRecord, WorkerRecord, CONTROL_KEY};
use crate::{Config, Error, Partition, RebalanceKind};

pub(crate) use measure::Measure;

/// What a leader term tells its shell.
#[derive(Debug)]
pub(crate) enum LeaderEffect {
    /// Read the partition source and answer with [`LeaderInput::Source`].
    ReadSource,
    /// Every published key was re-stamped with this term's epoch: no write
    /// of an older leader can land from now on.
    InOffice,
    /// The calculator's phase (for the manager's state).
    Phase(Phase),
    /// A rebalance was computed (for metrics).
    Rebalanced(RebalanceKind),
    /// Partitions parked by label in the latest publication (for metrics).
    Parked(usize),
    /// Worth an `on_error` report.
    Report(Error),
    /// The user's plug-in code panicked: hand the lease to another worker.
    Resign,
    /// A measurement (for metrics).
    Measured(Measure),
}

/// What a term needs to know.
#[derive(Clone)]
pub(crate) struct LeaderParams {
    /// This worker's ID.
    pub(crate) id: String,
    /// The group's timings.
    pub(crate) config: Config,
    /// The placement strategy.
    pub(crate) strategy: Arc<dyn AssignmentStrategy>,
    /// Re-read the source this often, if set.
    pub(crate) refresh_every: Option<Duration>,
    /// The buckets' names (workers, assignments), for reports.
    pub(crate) buckets: (String, String),
}

#[derive(Debug)]
enum InFlight {
    Keys,
    ReadKey(String),
    Restamp(String),
    Delete(String),
    FenceRead(String),
    Write(String),
    Control,
}

enum Office {
    /// Waiting for the partition source.
    Source,
    /// Replaying the heartbeats until the watch is synced (or the deadline).
    Replay {
        until: Instant,
    },
    /// Reading the published keys: those still to read, and what was read.
    Read(Box<Adopted>),
    /// A read or re-stamp failed: start over at this time.
    Retry(Instant),
    Leading,
}

/// What a new leader read of the assignments bucket.
#[derive(Default)]
struct Adopted {
    to_read: VecDeque<String>,
    records: BTreeMap<String, (AssignmentRecord, Revision)>,
    meta: Option<(MetaRecord, Revision)>,
    /// Keys read, to be re-stamped.
    to_stamp: VecDeque<String>,
    listed: bool,
}

/// One leader term.
pub(crate) struct LeaderNode {
    p: LeaderParams,
    epoch: u64,
    now: Instant,
    calc: Option<Calculator>,
    office: Office,
    /// Watch events that came before the calculator existed.
    early: Vec<WatchEvent>,
    fence: Fence,
    in_flight: Option<InFlight>,
    effects: VecDeque<LeaderEffect>,
    lease_valid_until: Option<Instant>,
    /// Writes not yet confirmed, and the version they publish.
    pending: BTreeMap<String, Vec<u8>>,
    version: u64,
    /// Keys of the current pass over `pending`; the next pass not before
    /// `retry_at`.
    round: VecDeque<String>,
    retry_at: Option<Instant>,
    deletes: VecDeque<String>,
    /// Deletes that failed, queued again at the next pass.
    undeleted: Vec<String>,
    /// The partition ids of each pending worker record.
    writing: BTreeMap<String, BTreeSet<String>>,
    /// What the bucket may show, so no write lists a partition under a
    /// second key.
    view: ShownView,
    /// A newer leader's epoch found in a key: this term writes no more
    /// (unless the lease proves it a forgotten one, see `outranked`).
    deposed: Option<u64>,
    /// An epoch above this term's found in a key, awaiting the lease's
    /// verdict.
    outranked: Option<outranked::Outranked>,
    source_wanted: bool,
    source_asked: bool,
    source_retry: Option<Instant>,
    /// This worker's own heartbeats, to date the replayed ones.
    beats: BeatLog,
    /// [`LeaderInput::WallClock`] (0 until told: no floor).
    wall_ms: u64,
    /// The replay's worker entries (key, revision), dated when it ends.
    replay_dates: Vec<(String, crate::store::Revision)>,
    /// Backoff and report memory of a failing partition source.
    source_backoff: ErrorRetry,
    next_refresh: Option<Instant>,
    phase: Option<Phase>,
    /// The heartbeats' replay ended with the watch synced: a worker not
    /// heard from in it is gone.
    replayed: bool,
    /// `version` is not confirmed yet.
    unconfirmed: bool,
    /// When the calculator last ticked.
    last_tick: Option<Instant>,
    /// Publications handed to the store in this term.
    pub(crate) published: u64,
    control: control::Control,
    meter: measure::Meter,
}

impl LeaderNode {
    /// A term with `epoch`, starting at `now`.
    pub(crate) fn new(p: LeaderParams, epoch: u64, now: Instant) -> Self {
        LeaderNode {
            next_refresh: p.refresh_every.map(|d| now + d),
            source_backoff: crate::core::calculator::plugin_retry(&p.config),
            beats: BeatLog::default(),
            wall_ms: 0,
            replay_dates: Vec::new(),
            p,
            epoch,
            now,
            calc: None,
            office: Office::Source,
            early: Vec::new(),
            fence: Fence::new(epoch),
            in_flight: None,
            effects: VecDeque::from([LeaderEffect::ReadSource]),
            lease_valid_until: None,
            pending: BTreeMap::new(),
            version: 0,
            round: VecDeque::new(),
            retry_at: None,
            deletes: VecDeque::new(),
            undeleted: Vec::new(),
            writing: BTreeMap::new(),
            view: ShownView::default(),
            deposed: None,
            outranked: None,
            source_wanted: false,
            source_asked: true,
            source_retry: None,
            phase: None,
            replayed: false,
            unconfirmed: false,
            last_tick: None,
            published: 0,
            control: control::Control::default(),
            meter: measure::Meter::default(),
        }
    }

    fn retry_every(&self) -> Duration {
        self.p.config.heartbeat_interval / 4
    }

    /// The calculator's phase, once in office.
    pub(crate) fn phase(&self) -> Option<Phase> {
        self.calc.as_ref().map(|c| c.phase())
    }

    /// A key carries `epoch`, above this term's: stop writing until the
    /// lease says whether a newer leader exists (reported once).
    fn outranked_by(&mut self, epoch: u64) {
        if self.outranked.is_none() {
            log::warn!(
                "[{}] a record carries epoch {epoch}, above this term's {}: writing nothing until a lease renewal shows whether a newer leader exists",
                self.p.id,
                self.epoch
            );
        }
        self.outranked = Some(outranked::Outranked::note(self.outranked, epoch, self.now));
        self.check_outranked();
    }

    /// The summary names another leader under this term's epoch (see
    /// [`outranked::twin`]): as for a higher epoch, nothing is written
    /// until the lease says which term holds it (reported once).
    fn twin_found(&mut self, leader: &str) {
        if self.outranked.is_none() {
            log::warn!(
                "[{}] the summary names leader {leader} under this term's epoch {}: writing nothing until a lease renewal shows which term holds the lease",
                self.p.id,
                self.epoch
            );
        }
        self.outranked = Some(outranked::Outranked::note(
            self.outranked,
            self.epoch,
            self.now,
        ));
        self.check_outranked();
    }

    /// A renewal sent after the epoch was found was confirmed: no newer
    /// leader can have written it, it is from a lease history the store forgot. Lead
    /// on above it.
    fn check_outranked(&mut self) {
        let Some(o) = self.outranked else {
            return;
        };
        let step_down = crate::config::ratios::step_down_after(self.p.config.election_ttl);
        if !o.disproved_by(self.lease_valid_until, step_down) {
            return;
        }
        let epoch = o.epoch.saturating_add(1);
        log::warn!(
            "[{}] epoch {} was found while the lease was valid: the lease bucket forgot it; leading on as epoch {epoch}",
            self.p.id,
            o.epoch
        );
        self.effects.push_back(LeaderEffect::Report(Error::Kv(
            crate::store::KvError::Forgot(format!("lease (epochs up to {})", o.epoch)),
        )));
        self.epoch = epoch;
        self.fence.raise_epoch(epoch);
        if let Some(calc) = self.calc.as_mut() {
            calc.raise_epoch(epoch);
        }
        self.outranked = None;
        self.deposed = None;
    }

    fn lease_valid(&self, now: Instant) -> bool {
        self.lease_valid_until.is_some_and(|t| now < t)
    }

    /// The partition source's answer to [`LeaderEffect::ReadSource`].
    fn handle_source(&mut self, now: Instant, result: Result<Vec<Partition>, Error>) {
        self.now = now;
        self.source_asked = false;
        match result {
            Ok(partitions) => {
                self.source_retry = None;
                self.source_backoff.succeeded();
                match &mut self.calc {
                    Some(calc) => calc.set_partitions(partitions),
                    None => self.start(now, partitions),
                }
            }
            Err(e) => {
                let panicked = matches!(e, Error::PluginPanicked { .. });
                if self.source_backoff.failed(now, &e) || panicked {
                    self.effects.push_back(LeaderEffect::Report(e));
                }
                if panicked {
                    self.effects.push_back(LeaderEffect::Resign);
                }
                // Acting on an empty list would revoke every partition, so
                // the published assignments stay in force meanwhile.
                self.source_retry = self.source_backoff.retry_at();
            }
        }
    }

    fn start(&mut self, now: Instant, partitions: Vec<Partition>) {
        let mut calc = Calculator::new(
            self.p.config.clone(),
            self.p.strategy.clone(),
            self.p.id.clone(),
            self.epoch,
            now,
            partitions,
        );
        calc.floor_versions(self.wall_ms);
        self.office = Office::Replay {
            until: now + self.p.config.operation_timeout * 2,
        };
        for ev in std::mem::take(&mut self.early) {
            self.replay_step(&mut calc, now, ev);
        }
        self.calc = Some(calc);
    }

    /// One event of the workers watch; its `Synced` ends the replay.
    fn replay_step(&mut self, calc: &mut Calculator, now: Instant, ev: WatchEvent) {
        if ev == WatchEvent::Synced {
            if let Office::Replay { .. } = self.office {
                self.replayed = true;
                self.office = Office::Read(Box::default());
                self.date_replay(calc);
            }
        }
        self.on_worker_event(calc, now, ev);
    }

    /// An event of the watch on the workers bucket.
    pub(crate) fn handle_watch(&mut self, now: Instant, ev: WatchEvent) {
        self.now = now;
        let Some(mut calc) = self.calc.take() else {
            self.early.push(ev);
            return;
        };
        self.replay_step(&mut calc, now, ev);
        self.calc = Some(calc);
    }

    fn on_worker_event(&mut self, calc: &mut Calculator, now: Instant, ev: WatchEvent) {
        match ev {
            WatchEvent::Put(entry) if entry.key == REFRESH_KEY => self.source_wanted = true,
            WatchEvent::Put(entry) if entry.key == CONTROL_KEY => self.control_nudged(),
            WatchEvent::Put(entry) => {
                match wire::decode::<WorkerRecord>(&self.p.buckets.0, &entry.key, &entry.value) {
                    Ok(rec) => {
                        calc.observe_worker(now, &entry.key, &rec);
                        // A live put was just made; a replayed one may be
                        // as old as the predecessor's crash (dated when the
                        // replay ends, see `date_replay`).
                        if matches!(self.office, Office::Replay { .. }) {
                            self.replay_dates.push((entry.key, entry.revision));
                        }
                    }
                    Err(e) => self.effects.push_back(LeaderEffect::Report(e)),
                }
            }
            WatchEvent::Delete { key, .. } if key != REFRESH_KEY && key != CONTROL_KEY => {
                calc.worker_gone(&key)
            }
            _ => {}
        }
    }

    /// Dates the replayed heartbeats by this worker's own (see
    /// [`BeatLog::date_replay`]), before any live one is observed.
    fn date_replay(&mut self, calc: &mut Calculator) {
        let entries = std::mem::take(&mut self.replay_dates);
        let own = entries
            .iter()
            .rev()
            .find(|(key, _)| *key == self.p.id)
            .map(|(_, r)| *r);
        let Some(dated) = self.beats.date_replay(own, &entries) else {
            log::warn!(
                "[{}] own heartbeat missing or older in the replay: the store went back; replayed workers count as seen now",
                self.p.id
            );
            calc.quiesce(self.now);
            return;
        };
        for (key, by) in dated {
            calc.seen_by(&key, by);
        }
    }

    /// Time passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Office::Replay { until } = self.office {
            if now >= until {
                log::warn!(
                    "[{}] workers replay not finished in time; going on",
                    self.p.id
                );
                self.office = Office::Read(Box::default());
                if let Some(mut calc) = self.calc.take() {
                    self.date_replay(&mut calc);
                    self.calc = Some(calc);
                }
            }
        }
        if let Office::Retry(at) = self.office {
            if now >= at {
                self.office = Office::Read(Box::default());
            }
        }
        if self.next_refresh.is_some_and(|t| now >= t) {
            self.source_wanted = true;
            self.next_refresh = self.p.refresh_every.map(|d| now + d);
        }
        if self.source_retry.is_some_and(|t| now >= t) {
            self.source_retry = None;
            self.source_wanted = true;
        }
    }
}

/// What the shell and the election tell a leader term.
#[derive(Debug)]
pub(crate) enum LeaderInput {
    /// Until when the lease may be acted on, as the election last said.
    Lease(Option<Instant>),
    /// Re-read the source (a refresh request, or the source's own change
    /// notification).
    Refresh,
    /// The partition source's answer to [`LeaderEffect::ReadSource`].
    Source(Result<Vec<Partition>, Error>),
    /// This worker's confirmed heartbeats (see [`BeatLog`]): the replay's
    /// heartbeats are dated by them instead of counting as just seen.
    Beats(BeatLog),
    /// The wall clock at the term's start, in milliseconds since the Unix
    /// epoch: the term numbers its versions (so tokens) from above it (see
    /// `Calculator::floor_versions`).
    WallClock(u64),
}

impl Node for LeaderNode {
    type Input = LeaderInput;
    type Effect = LeaderEffect;

    fn handle_input(&mut self, now: Instant, input: LeaderInput) {
        self.now = now;
        match input {
            LeaderInput::Lease(valid_until) => {
                self.lease_valid_until = valid_until;
                self.check_outranked();
            }
            LeaderInput::Refresh => self.source_wanted = true,
            LeaderInput::WallClock(ms) => self.wall_ms = ms,
            LeaderInput::Source(result) => self.handle_source(now, result),
            LeaderInput::Beats(beats) => self.beats = beats,
        }
    }

    fn handle_watch(&mut self, now: Instant, ev: WatchEvent) {
        LeaderNode::handle_watch(self, now, ev)
    }

    /// Going silent would leave a leader that renews its lease but never
    /// publishes: the driver watches again (the replay re-announces every
    /// worker, whatever the cause), and the end is reported.
    fn handle_watch_end(&mut self, now: Instant, _store_forgot: bool) {
        self.now = now;
        let e = crate::store::KvError::Unavailable("workers watch ended".into());
        self.effects.push_back(LeaderEffect::Report(Error::Kv(e)));
    }

    fn handle_reply(&mut self, now: Instant, reply: Reply) {
        LeaderNode::handle_reply(self, now, reply)
    }

    fn handle_timeout(&mut self, now: Instant) {
        LeaderNode::handle_timeout(self, now)
    }

    fn poll_op(&mut self, now: Instant) -> Option<Op> {
        LeaderNode::poll_op(self, now)
    }

    fn poll_effect(&mut self) -> Option<LeaderEffect> {
        LeaderNode::poll_effect(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        LeaderNode::poll_timeout(self)
    }
}

mod aging;
mod control;
mod measure;
mod office;
mod outranked;
mod publish;
pub(crate) mod retry;
#[cfg(test)]
mod tests;
mod view;

pub(crate) use aging::BeatLog;
use retry::ErrorRetry;
use view::ShownView;
