//! State shared between the manager's threads and its handle: the current
//! state (derived from a few flags, transitions validated), the assignment
//! snapshot, the leader flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::core::calculator::Phase;
use crate::core::leader::BeatLog;
use crate::metrics::Metrics;
use crate::runtime::hooks::Job;
use crate::{Assignment, AssignmentChange, Error, State};

/// The inputs the state is derived from. Each thread owns some of them.
#[derive(Clone, Copy, Debug)]
struct Flags {
    startup: Option<State>,
    degraded: bool,
    has_assignment: bool,
    leader_phase: Option<Phase>,
    shutdown: bool,
}

impl Flags {
    fn state(&self) -> State {
        if self.shutdown {
            return State::Shutdown;
        }
        if let Some(s) = self.startup {
            return s;
        }
        if self.degraded {
            return State::Degraded;
        }
        if !self.has_assignment {
            return State::WaitingAssignment;
        }
        match self.leader_phase {
            Some(Phase::Scaling) => State::Scaling,
            Some(Phase::Rebalancing) => State::Rebalancing,
            Some(Phase::Emergency) => State::Emergency,
            // ColdStart only lingers here until the leader thread publishes
            // the phase that follows its first publication.
            Some(Phase::Stable) | Some(Phase::ColdStart) | None => State::Stable,
        }
    }
}

struct StateCell {
    flags: Flags,
    state: State,
}

/// Shared by every thread of one manager.
pub(crate) struct Shared {
    worker_id: std::sync::OnceLock<String>,
    start_failure: Mutex<Option<Error>>,
    cell: Mutex<StateCell>,
    changed: Condvar,
    assignment: RwLock<Assignment>,
    leader: AtomicBool,
    drained: AtomicBool,
    jobs: Mutex<Option<Sender<Job>>>,
    /// The last failure to open each watch (`bucket/key`), reported once
    /// until the watch opens again: a driver retries every interval.
    watch_failures: Mutex<std::collections::BTreeMap<String, String>>,
    pub metrics: Arc<dyn Metrics>,
    /// For health probes: the last confirmed heartbeat, and since when the
    /// worker has been degraded.
    probes: Mutex<Probes>,
    /// This worker's confirmed heartbeats, for a leader term to date the
    /// heartbeats it replays.
    beats: Mutex<BeatLog>,
}

#[derive(Clone)]
pub(crate) struct Probes {
    pub last_heartbeat: Option<Instant>,
    pub degraded_since: Option<Instant>,
    /// When the heartbeat thread last finished a KV operation, whatever its
    /// outcome (or when the manager was made): liveness, which an outage
    /// must not fail.
    pub last_progress: Instant,
    /// The last time the store was found to have forgotten (a bucket
    /// recreated or rolled back), and which bucket.
    pub store_fault: Option<(Instant, String)>,
}

impl Shared {
    pub fn new(jobs: Sender<Job>, metrics: Arc<dyn Metrics>) -> Self {
        Shared {
            worker_id: std::sync::OnceLock::new(),
            start_failure: Mutex::new(None),
            cell: Mutex::new(StateCell {
                flags: Flags {
                    startup: Some(State::Init),
                    degraded: false,
                    has_assignment: false,
                    leader_phase: None,
                    shutdown: false,
                },
                state: State::Init,
            }),
            changed: Condvar::new(),
            assignment: RwLock::new(Assignment::default()),
            leader: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            jobs: Mutex::new(Some(jobs)),
            watch_failures: Mutex::default(),
            metrics,
            probes: Mutex::new(Probes {
                last_heartbeat: None,
                degraded_since: None,
                last_progress: Instant::now(),
                store_fault: None,
            }),
            beats: Mutex::new(BeatLog::default()),
        }
    }

    /// The heartbeat thread's write got `revision`, answered just now.
    pub fn record_beat(&self, revision: u64) {
        self.beats.lock().record(revision, Instant::now());
    }

    /// A copy of the heartbeats recorded so far.
    pub fn beats(&self) -> BeatLog {
        self.beats.lock().clone()
    }

    /// The claimed worker ID; empty until the claim ends.
    pub fn worker_id(&self) -> &str {
        self.worker_id.get().map_or("", String::as_str)
    }

    /// Set once, when the claim ends.
    pub fn set_worker_id(&self, id: &str) {
        let _ = self.worker_id.set(id.to_string());
    }

    /// Why the start failed, kept for `start()` to return.
    pub fn set_start_failure(&self, e: Error) {
        *self.start_failure.lock() = Some(e);
    }

    pub fn take_start_failure(&self) -> Option<Error> {
        self.start_failure.lock().take()
    }

    /// Queues a job for the callback thread (dropped after shutdown).
    pub fn send(&self, job: Job) {
        if let Some(tx) = self.jobs.lock().as_ref() {
            let _ = tx.send(job);
        }
    }

    /// Reports an error through logs and `on_error`.
    pub fn report(&self, error: Error) {
        log::warn!("[{}] {error}", self.worker_id());
        self.metrics.alert(crate::metrics::alert_kind(&error));
        self.send(Job::Error(error));
    }

    /// The store forgot what `bucket` held (recreated, or rolled back):
    /// reported through `on_error`, counted as a store incident, shown by
    /// `health()`.
    pub fn store_forgot(&self, error: crate::store::KvError, bucket: &str) {
        self.probes.lock().store_fault = Some((Instant::now(), bucket.to_string()));
        self.metrics.store_incident();
        self.report(Error::Kv(error));
    }

    /// A watch of `key` (every key: `None`) in `store`, or `None` after reporting why not (the
    /// caller retries later; the same failure again is not reported again).
    pub fn watch(
        &self,
        store: &dyn crate::store::KvStore,
        key: Option<&str>,
    ) -> Option<crate::store::Watch> {
        let which = format!("{}/{}", store.bucket(), key.unwrap_or("*"));
        match store.watch(key) {
            Ok(watch) => {
                self.watch_failures.lock().remove(&which);
                Some(watch)
            }
            Err(e) => {
                let text = e.to_string();
                let last = self.watch_failures.lock().insert(which, text.clone());
                if last.as_deref() != Some(text.as_str()) {
                    self.report(Error::Kv(e));
                }
                None
            }
        }
    }

    /// Closes the job queue so the callback thread ends after the queued jobs.
    pub fn close_jobs(&self) {
        self.jobs.lock().take();
    }

    pub fn state(&self) -> State {
        self.cell.lock().state
    }

    fn update(&self, f: impl FnOnce(&mut Flags)) {
        let mut cell = self.cell.lock();
        let before = cell.flags;
        f(&mut cell.flags);
        let from = cell.state;
        let to = cell.flags.state();
        if from == to {
            return;
        }
        if !from.can_transition_to(to) {
            cell.flags = before;
            drop(cell);
            log::error!(
                "[{}] invalid state transition {from} -> {to} (not applied)",
                self.worker_id()
            );
            self.send(Job::Error(Error::InvalidTransition { from, to }));
            return;
        }
        cell.state = to;
        drop(cell);
        log::info!("[{}] state {from} -> {to}", self.worker_id());
        self.changed.notify_all();
        self.metrics.state(to);
        self.send(Job::State(from, to));
    }

    /// Records a state of the startup sequence (`None` once it is over).
    pub fn set_startup(&self, s: Option<State>) {
        self.update(|f| f.startup = s);
    }

    pub fn set_degraded(&self, degraded: bool) {
        {
            let mut probes = self.probes.lock();
            probes.degraded_since = match (degraded, probes.degraded_since) {
                (true, Some(since)) => Some(since),
                (true, None) => Some(Instant::now()),
                (false, _) => None,
            };
        }
        self.update(|f| f.degraded = degraded);
    }

    /// A heartbeat write was confirmed by the server.
    pub fn heartbeat_confirmed(&self) {
        self.probes.lock().last_heartbeat = Some(Instant::now());
    }

    /// The heartbeat thread finished a KV operation (answered or failed).
    pub fn progressed(&self) {
        self.probes.lock().last_progress = Instant::now();
    }

    pub fn probes(&self) -> Probes {
        self.probes.lock().clone()
    }

    pub fn set_leader_phase(&self, phase: Option<Phase>) {
        self.update(|f| f.leader_phase = phase);
    }

    pub fn set_shutdown(&self) {
        self.update(|f| f.shutdown = true);
    }

    /// Installs a new assignment snapshot and queues its callback.
    pub fn install(&self, assignment: Assignment, has_assignment: bool) {
        let (version, owned) = (assignment.version(), assignment.len());
        let change = {
            let mut current = self.assignment.write();
            let change = AssignmentChange::between(&current, &assignment);
            *current = assignment;
            change
        };
        self.metrics.assignment_version(version);
        self.metrics.partitions_owned(owned);
        self.update(|f| f.has_assignment = has_assignment);
        self.send(Job::Assignment(change));
    }

    pub fn assignment(&self) -> Assignment {
        self.assignment.read().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    pub fn set_leader(&self, leader: bool) {
        if self.leader.swap(leader, Ordering::SeqCst) != leader {
            log::info!(
                "[{}] {}",
                self.worker_id(),
                if leader {
                    "became leader"
                } else {
                    "no longer leader"
                }
            );
            self.metrics.leader(leader);
            self.send(Job::Leadership(leader));
        }
    }

    /// Blocks until `pred(state)` or the deadline; returns the last state and
    /// whether the predicate held.
    pub fn wait_until(&self, deadline: Instant, pred: impl Fn(State) -> bool) -> (State, bool) {
        let mut cell = self.cell.lock();
        loop {
            if pred(cell.state) {
                return (cell.state, true);
            }
            if Instant::now() >= deadline {
                return (cell.state, false);
            }
            self.changed.wait_until(&mut cell, deadline);
        }
    }

    /// The worker announced its departure and holds nothing any more.
    pub fn set_drained(&self) {
        self.drained.store(true, Ordering::SeqCst);
        let _guard = self.cell.lock();
        self.changed.notify_all();
    }

    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::SeqCst)
    }

    /// Blocks until drained or the deadline.
    pub fn wait_drained(&self, deadline: Instant) -> bool {
        let mut cell = self.cell.lock();
        while !self.is_drained() {
            if self.changed.wait_until(&mut cell, deadline).timed_out() {
                return self.is_drained();
            }
        }
        true
    }
}
