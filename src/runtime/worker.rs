//! The heartbeat thread: renews this worker's ID with a heartbeat every
//! interval, applies the assignments published for it, fences itself when
//! its heartbeats cannot be confirmed, and drains on a graceful stop.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{at, never, select_biased, Receiver};

use crate::core::worker::{degraded_alert_at, BeatAction, BeatOutcome, WorkerCore, WorkerEvent};
use crate::runtime::shared::Shared;
use crate::store::{KvError, KvStore, Watch, WatchEvent};
use crate::wire::{self, AssignmentRecord, WorkerRecord};
use crate::Error;

/// The shortest wait between two passes of the loop.
const MIN_TICK: Duration = Duration::from_millis(10);

/// What the manager can ask of the heartbeat thread.
pub(crate) enum Command {
    /// Announce the departure and release everything.
    Leave,
    /// Release everything now (the drain took too long), delete the key and
    /// exit.
    Quit,
}

pub(crate) struct WorkerThread {
    pub id: String,
    pub core: WorkerCore,
    pub shared: Arc<Shared>,
    pub workers: Arc<dyn KvStore>,
    pub assignments: Arc<dyn KvStore>,
    pub commands: Receiver<Command>,
    pub applied: Receiver<u64>,
    pub retry_every: Duration,
    /// How long heartbeats had failed when the worker became degraded.
    pub fence_after: Duration,
    /// Since when heartbeats fail, and how many alerts were raised.
    pub degraded: Option<(Instant, u32)>,
    /// When each assignment callback still running was queued.
    pub callbacks: VecDeque<Instant>,
    /// A callback may run this long before heartbeats are suspended.
    pub handoff_timeout: Duration,
}

fn outcome(result: &Result<u64, KvError>) -> BeatOutcome {
    match result {
        Ok(rev) => BeatOutcome::Written(*rev),
        Err(e) if e.is_conflict() => BeatOutcome::Conflict,
        Err(_) => BeatOutcome::Unknown,
    }
}

impl WorkerThread {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        let name = format!("parti-heartbeat-{}", self.id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
    }

    fn open_watch(&self) -> Option<Watch> {
        self.shared.watch(self.assignments.as_ref(), &self.id)
    }

    fn run(mut self) {
        let mut watch = self.open_watch();
        let mut watch_retry = Instant::now() + self.retry_every;
        let mut quitting = false;
        loop {
            let mut deadline = self.core.next_deadline();
            if watch.is_none() {
                deadline = deadline.min(watch_retry);
            }
            if let Some((since, n)) = self.degraded {
                deadline = deadline.min(since + degraded_alert_at(n));
            }
            // Once suspended there is nothing more to do at that deadline;
            // keeping it (in the past) would spin this loop.
            if let Some(since) = self.callbacks.front().filter(|_| !self.core.is_suspended()) {
                deadline = deadline.min(*since + self.handoff_timeout);
            }
            // While heartbeats are suspended the core's beat deadline stays
            // in the past: wait at least MIN_TICK rather than spin.
            deadline = deadline.max(Instant::now() + MIN_TICK);
            let events = watch.as_ref().map(|w| w.events().clone());
            let events = events.unwrap_or_else(never);
            select_biased! {
                recv(self.commands) -> cmd => match cmd {
                    Ok(Command::Leave) => self.core.leave(Instant::now()),
                    Ok(Command::Quit) | Err(_) => quitting = true,
                },
                recv(self.applied) -> v => {
                    if let Ok(v) = v {
                        self.callbacks.pop_front();
                        if self.callbacks.is_empty() {
                            self.core.resume(Instant::now());
                        }
                        self.core.applied(Instant::now(), v);
                    }
                }
                recv(events) -> ev => match ev {
                    Ok(ev) => self.on_watch(ev),
                    Err(_) => {
                        watch = None;
                        watch_retry = Instant::now() + self.retry_every;
                    }
                },
                recv(at(deadline)) -> _ => {}
            }
            if quitting {
                break;
            }
            if watch.is_none() && Instant::now() >= watch_retry {
                watch = self.open_watch();
                watch_retry = Instant::now() + self.retry_every;
            }
            if self.step().is_err() {
                return;
            }
            self.raise_alerts();
            self.watch_callbacks();
            if self.core.drained() && !self.shared.is_drained() {
                self.shared.set_drained();
            }
        }
        self.leave_group();
    }

    /// Releases what is still held, then deletes the key so the leader
    /// forgets this worker at once.
    fn leave_group(&mut self) {
        if !self.core.current().is_empty() {
            if let Some(WorkerEvent::Fenced(released)) = self.core.on_assignment(None) {
                self.install(released, false);
            }
        }
        if let Err(e) = self.workers.delete(&self.id, None) {
            log::warn!("[{}] could not delete worker key: {e}", self.id);
        }
    }

    /// A callback stuck past the handoff timeout: stop heartbeating, so the
    /// leader grants what it holds elsewhere only after its lease expired.
    fn watch_callbacks(&mut self) {
        let Some(since) = self.callbacks.front() else {
            return;
        };
        let waited = since.elapsed();
        if waited >= self.handoff_timeout && !self.core.is_suspended() {
            self.core.suspend();
            self.shared.report(Error::HandoffTimeout {
                worker: self.id.clone(),
                waited,
            });
        }
    }

    fn install(&mut self, assignment: crate::Assignment, has_assignment: bool) {
        self.callbacks.push_back(Instant::now());
        self.shared.install(assignment, has_assignment);
    }

    /// Reports an ongoing outage through `on_error` at escalating intervals.
    fn raise_alerts(&mut self) {
        match (self.core.is_degraded(), &mut self.degraded) {
            (false, d) => *d = None,
            (true, None) => self.degraded = Some((Instant::now(), 0)),
            (true, Some(_)) => {}
        }
        if let Some((since, n)) = &mut self.degraded {
            if Instant::now() >= *since + degraded_alert_at(*n) {
                *n += 1;
                let for_ = since.elapsed() + self.fence_after;
                self.shared.report(Error::Degraded { for_ });
            }
        }
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        // After a freeze the fencing deadline may have passed: fence before
        // acting on anything that queued up meanwhile.
        if let Some(ev) = self.core.tick(Instant::now()) {
            self.handle(ev);
        }
        self.core.observe_lease_epoch(self.shared.lease_epoch());
        let event = match ev {
            WatchEvent::Put(entry) => {
                match wire::decode::<AssignmentRecord>(
                    self.assignments.bucket(),
                    &entry.key,
                    &entry.value,
                ) {
                    Ok(record) => self.core.on_assignment(Some(&record)),
                    Err(e) => {
                        self.shared.report(e);
                        None
                    }
                }
            }
            // Holding nothing, the core ignores it.
            WatchEvent::Delete { .. } => self.core.on_assignment(None),
            WatchEvent::Synced => None,
        };
        if let Some(event) = event {
            self.handle(event);
        }
    }

    fn handle(&mut self, event: WorkerEvent) {
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
            }
            WorkerEvent::Fenced(released) => {
                log::warn!(
                    "[{}] heartbeat not confirmed: released all partitions",
                    self.id
                );
                self.shared.set_degraded(true);
                self.install(released, false);
            }
            WorkerEvent::Degraded => {
                log::warn!(
                    "[{}] heartbeat not confirmed: keeping partitions (degraded)",
                    self.id
                );
                self.shared.set_degraded(true);
            }
            WorkerEvent::Recovered => {
                log::info!("[{}] heartbeat confirmed again", self.id);
                self.shared.set_degraded(false);
            }
            WorkerEvent::IdLost => {
                if let Some(WorkerEvent::Fenced(released)) = self.core.on_assignment(None) {
                    self.install(released, false);
                }
                self.shared.report(Error::WorkerIdLost {
                    worker: self.id.clone(),
                });
                self.shared.set_shutdown();
            }
        }
    }

    /// Runs the fencing check and at most a couple of heartbeat operations.
    /// `Err` when the worker must stop (ID lost).
    fn step(&mut self) -> Result<(), ()> {
        if let Some(ev) = self.core.tick(Instant::now()) {
            self.handle(ev);
        }

        let mut action = self.core.poll(Instant::now());
        while let Some(a) = action.take() {
            let sent = Instant::now();
            match a {
                BeatAction::Update { record, revision } => {
                    let r = self
                        .workers
                        .update(&self.id, &wire::encode(&record), revision);
                    self.after_write(sent, &r);
                }
                BeatAction::Create(record) => {
                    let r = self.workers.create(&self.id, &wire::encode(&record));
                    self.after_write(sent, &r);
                }
                BeatAction::ReadOwnKey => {
                    let found = match self.workers.get(&self.id) {
                        Ok(found) => found,
                        Err(e) => {
                            log::debug!("[{}] reading own key: {e}", self.id);
                            self.core.read_failed(Instant::now());
                            continue;
                        }
                    };
                    let found = found.and_then(|entry| {
                        wire::decode::<WorkerRecord>(
                            self.workers.bucket(),
                            &entry.key,
                            &entry.value,
                        )
                        .ok()
                        .map(|r| (entry.revision, r))
                    });
                    match self.core.own_key_read(Instant::now(), found) {
                        Ok(next) => action = next,
                        Err(ev) => {
                            self.handle(ev);
                            return Err(());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn after_write(&mut self, sent: Instant, result: &Result<u64, KvError>) {
        match result {
            Ok(_) => self.shared.heartbeat_confirmed(),
            Err(e) => {
                log::debug!("[{}] heartbeat: {e}", self.id);
                self.shared.metrics.heartbeat_failure();
            }
        }
        if let Some(ev) = self.core.on_beat(Instant::now(), sent, outcome(result)) {
            self.handle(ev);
        }
    }
}
