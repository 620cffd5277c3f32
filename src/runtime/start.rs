//! A manager's start thread and the threads it starts: the ID claim runs
//! there, not on the caller's thread, so neither `spawn()` nor `stop()`
//! waits for a preferred ID's holder to go quiet; once an ID is claimed it
//! starts the heartbeat and election threads. [`Threads::stop`] ends them
//! all, whichever step the start has reached.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::core::departure::Departure;
use crate::core::election::ElectionNode;
use crate::core::heartbeat::{HeartbeatInput, HeartbeatNode};
use crate::core::leader::{LeaderInput, LeaderParams};
use crate::names::BucketNames;
use crate::runtime::election::ElectionThread;
use crate::runtime::leader::LeaderContext;
use crate::runtime::shared::Shared;
use crate::runtime::worker::WorkerThread;
use crate::runtime::{claim, join_until};
use crate::source::PartitionSource;
use crate::store::{KvBackend, KvStore};
use crate::strategy::AssignmentStrategy;
use crate::wire::WorkerRecord;
use crate::{Config, Error, State};

/// Everything the start thread needs to claim an ID and start the rest.
pub(crate) struct Start {
    pub shared: Arc<Shared>,
    pub config: Config,
    pub group: String,
    pub names: BucketNames,
    pub workers: Arc<dyn KvStore>,
    pub leader_store: Arc<dyn KvStore>,
    pub assignments: Arc<dyn KvStore>,
    pub preferred_id: Option<String>,
    pub instance: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: u32,
    pub source: Arc<dyn PartitionSource>,
    pub strategy: Arc<dyn AssignmentStrategy>,
    pub refresh_every: Option<Duration>,
    pub beats: (Sender<HeartbeatInput>, Receiver<HeartbeatInput>),
    pub leader_inputs: (Sender<LeaderInput>, Receiver<LeaderInput>),
    /// When the first assignment is due; a preferred ID whose takeover
    /// would end later is given up.
    pub deadline: Instant,
    /// Whether a failed claim is reported through `on_error` (for
    /// `spawn()`, which has returned already) or only kept for `start()`.
    pub report_failure: bool,
}

/// The threads the start thread started (none when it was stopped first,
/// or failed).
#[derive(Default)]
pub(crate) struct Started {
    heartbeat: Option<(Sender<HeartbeatInput>, JoinHandle<()>)>,
    election: Option<(Sender<()>, JoinHandle<()>)>,
}

impl Start {
    /// Runs the start on a thread of its own; a message on the returned
    /// sender ends a claim still under way.
    pub fn spawn(self) -> std::io::Result<(Sender<()>, JoinHandle<Started>)> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name(format!("parti-start-{}", self.group))
            .spawn(move || self.run(stop_rx))?;
        Ok((stop_tx, handle))
    }

    fn run(self, stop: Receiver<()>) -> Started {
        let record = WorkerRecord::starting(
            &self.instance,
            std::env::var("HOSTNAME").unwrap_or_default(),
            std::process::id(),
        )
        .described(&self.labels, self.capacity);
        let claimed = claim::claim(
            self.workers.clone(),
            self.assignments.clone(),
            &self.config,
            self.preferred_id.as_deref(),
            &record,
            self.deadline,
            stop,
        );
        match claimed {
            Ok(Some((id, revision))) => self.launch(id, revision),
            Ok(None) => Started::default(),
            Err(e) => {
                self.fail(e);
                Started::default()
            }
        }
    }

    /// The start cannot go on: the manager shuts down, and `start()` (or
    /// `on_error`, after `spawn()`) learns why.
    fn fail(&self, e: Error) {
        log::warn!("group {}: cannot start: {e}", self.group);
        if self.report_failure {
            self.shared.report(e);
        } else {
            self.shared.set_start_failure(e);
        }
        self.shared.set_shutdown();
    }

    /// Starts the heartbeat and the election threads under the claimed ID.
    fn launch(self, id: String, revision: crate::store::Revision) -> Started {
        let shared = self.shared.clone();
        shared.set_worker_id(&id);
        log::info!(
            "[{id}] joined group {} as instance {}",
            self.group,
            self.instance
        );
        shared.set_startup(Some(State::Election));
        let (config, names) = (&self.config, &self.names);
        let mut node = HeartbeatNode::new(
            &id,
            &self.instance,
            revision,
            config,
            (&names.workers, &names.assignments),
            Instant::now(),
        );
        node.describe(self.labels.clone(), self.capacity);
        let retry_every = config.heartbeat_interval;
        // Stopped by the manager, or by the heartbeat thread when another
        // process holds this worker's ID.
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let (beat_tx, beat_rx) = self.beats.clone();
        let heartbeat = WorkerThread {
            id: id.clone(),
            node,
            shared: shared.clone(),
            workers: self.workers.clone(),
            assignments: self.assignments.clone(),
            inputs: beat_rx,
            election_stop: stop_tx.clone(),
            retry_every,
        }
        .spawn();
        let mut started = Started::default();
        match heartbeat {
            Ok(h) => started.heartbeat = Some((beat_tx.clone(), h)),
            Err(e) => {
                self.fail(spawn_error(e));
                return started;
            }
        }
        let election = ElectionThread {
            id: id.clone(),
            node: ElectionNode::new(
                &id,
                &self.instance,
                config.election_ttl,
                &names.leader,
                Instant::now(),
            ),
            shared: shared.clone(),
            store: self.leader_store.clone(),
            stop: stop_rx,
            inputs: crossbeam_channel::unbounded(),
            heartbeat: beat_tx,
            leader: LeaderContext {
                params: LeaderParams {
                    id: id.clone(),
                    config: config.clone(),
                    strategy: self.strategy.clone(),
                    refresh_every: self.refresh_every,
                    buckets: (names.workers.clone(), names.assignments.clone()),
                },
                changes: self.source.changes(),
                source: self.source.clone(),
                workers: self.workers.clone(),
                assignments: self.assignments.clone(),
                inputs: self.leader_inputs.1.clone(),
            },
            leader_inputs: self.leader_inputs.0.clone(),
            retry_every,
        }
        .spawn();
        match election {
            Ok(h) => started.election = Some((stop_tx, h)),
            Err(e) => self.fail(spawn_error(e)),
        }
        started
    }
}

pub(crate) fn spawn_error(e: std::io::Error) -> Error {
    Error::Kv(crate::store::KvError::Other(format!(
        "cannot spawn thread: {e}"
    )))
}

/// A manager's threads, and what stopping them needs.
pub(crate) struct Threads {
    pub shared: Arc<Shared>,
    pub backend: Arc<dyn KvBackend>,
    pub config: Config,
    pub callbacks: JoinHandle<()>,
    pub start: Option<(Sender<()>, JoinHandle<Started>)>,
}

/// The threads a launch has started so far. Dropped while it still holds
/// them (a later step failed), it stops them again.
pub(crate) struct Launch(pub Option<Threads>);

impl Drop for Launch {
    fn drop(&mut self) {
        if let Some(threads) = self.0.take() {
            threads.stop();
        }
    }
}

impl Threads {
    /// Leaves the group as gracefully as `shutdown_timeout` allows (the
    /// steps of [`Departure`]) and stops every thread; whether each ended in
    /// time.
    pub fn stop(self) -> bool {
        let (shared, config) = (&self.shared, &self.config);
        let asked = Instant::now();
        let deadline = asked + config.shutdown_timeout;
        let mut clean = true;
        let mut started = Started::default();
        if let Some((stop, handle)) = self.start {
            // Ends a claim still under way; the start thread then returns
            // within one KV operation.
            let _ = stop.try_send(());
            match join_until(handle, deadline) {
                Some(s) => started = s,
                None => clean = false,
            }
        }
        if let Some((inputs, handle)) = started.heartbeat {
            let (departure, first) = Departure::begin(config, asked, shared.state().is_assigned());
            let _ = inputs.send(first);
            if let Some(until) = departure.drain_until() {
                if !shared.wait_drained(until) {
                    log::warn!(
                        "[{}] drain not finished in time; releasing locally",
                        shared.worker_id()
                    );
                }
                let _ = inputs.send(HeartbeatInput::Quit);
            }
            clean &= join_until(handle, deadline).is_some();
        }
        if let Some((stop, handle)) = started.election {
            let _ = stop.try_send(());
            drop(stop);
            clean &= join_until(handle, deadline).is_some();
        }
        shared.set_shutdown();
        shared.close_jobs();
        // Called from a callback, the callback thread cannot be joined: it
        // ends by itself once this callback returns.
        if self.callbacks.thread().id() != std::thread::current().id() {
            clean &= join_until(self.callbacks, deadline).is_some();
        }
        self.backend.close();
        clean
    }
}
