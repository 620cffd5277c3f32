//! The election thread: campaigns for and renews the leader lease, and runs
//! the leader thread while this worker holds it.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{at, never, select_biased, Receiver, Sender};

use crate::core::lease::{LeaseAction, LeaseCore, LeaseEvent, WriteOutcome};
use crate::names::LEADER_KEY;
use crate::runtime::leader::{LeaderContext, LeaderThread};
use crate::runtime::shared::Shared;
use crate::store::{KvError, KvStore, Watch, WatchEvent};
use crate::wire::{self, LeaderRecord};
use crate::Error;

pub(crate) struct ElectionThread {
    pub id: String,
    pub core: LeaseCore,
    pub shared: Arc<Shared>,
    pub store: Arc<dyn KvStore>,
    pub stop: Receiver<()>,
    pub leader: LeaderContext,
    pub retry_every: Duration,
}

struct RunningLeader {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

impl ElectionThread {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        let name = format!("parti-election-{}", self.id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
    }

    fn open_watch(&self) -> Option<Watch> {
        self.shared.watch(self.store.as_ref(), LEADER_KEY)
    }

    fn run(mut self) {
        let mut watch = self.open_watch();
        let mut watch_retry = Instant::now() + self.retry_every;
        let mut running: Option<RunningLeader> = None;
        let mut settled = false;
        loop {
            let now = Instant::now();
            let mut deadline = self.core.next_deadline(now);
            if watch.is_none() {
                deadline = deadline.min(watch_retry);
            }
            let events = watch
                .as_ref()
                .map(|w| w.events().clone())
                .unwrap_or_else(never);
            let mut lease_events = Vec::new();
            select_biased! {
                recv(self.stop) -> _ => break,
                recv(events) -> ev => match ev {
                    Ok(WatchEvent::Put(entry)) => {
                        match wire::decode::<LeaderRecord>(self.store.bucket(), &entry.key, &entry.value) {
                            Ok(rec) => lease_events = self.core.observe(Instant::now(), entry.revision, Some(rec)),
                            Err(e) => self.shared.report(e),
                        }
                    }
                    Ok(WatchEvent::Delete { revision, .. }) => lease_events = self.core.observe(Instant::now(), revision, None),
                    Ok(WatchEvent::Synced) => {}
                    Err(_) => {
                        watch = None;
                        watch_retry = Instant::now() + self.retry_every;
                    }
                },
                recv(at(deadline)) -> _ => {}
            }
            if watch.is_none() && Instant::now() >= watch_retry {
                watch = self.open_watch();
                watch_retry = Instant::now() + self.retry_every;
            }
            lease_events.extend(self.core.tick(Instant::now()));
            if let Some(action) = self.core.poll(Instant::now()) {
                lease_events.extend(self.execute(&action));
            }
            for ev in lease_events {
                if !settled {
                    settled = true;
                    self.shared.set_startup(None);
                }
                self.on_event(ev, &mut running);
            }
            self.shared.set_lease_valid_until(self.core.valid_until());
            if self.shared.state() == crate::State::Shutdown {
                break;
            }
        }
        self.shared.set_lease_valid_until(None);
        stop_leader(&mut running, &self.shared);
        if let Some(revision) = self.core.held_revision() {
            // Hand the lease over at once instead of letting it expire.
            if let Err(e) = self.store.delete(LEADER_KEY, Some(revision)) {
                log::debug!("[{}] releasing the lease: {e}", self.id);
            }
            self.core.resign();
            self.shared.set_leader(false);
        }
    }

    fn execute(&mut self, action: &LeaseAction) -> Vec<LeaseEvent> {
        let sent = Instant::now();
        log::debug!("[{}] lease action {action:?}", self.id);
        let result: Result<u64, KvError> = match action {
            LeaseAction::Read => {
                return match self.store.get(LEADER_KEY) {
                    Ok(found) => {
                        let (revision, seen) = match found {
                            None => (0, None),
                            Some(e) => match wire::decode::<LeaderRecord>(
                                self.store.bucket(),
                                &e.key,
                                &e.value,
                            ) {
                                Ok(rec) => (e.revision, Some(rec)),
                                Err(err) => {
                                    // A corrupt lease counts as held by nobody
                                    // we know: taken over after a TTL.
                                    self.shared.report(err);
                                    let nobody = LeaderRecord {
                                        worker: String::new(),
                                        instance: String::new(),
                                        epoch: 0,
                                    };
                                    (e.revision, Some(nobody))
                                }
                            },
                        };
                        let mut evs = self.core.on_result(
                            Instant::now(),
                            sent,
                            action,
                            WriteOutcome::Unknown,
                        );
                        evs.extend(self.core.observe(Instant::now(), revision, seen));
                        evs
                    }
                    Err(e) => {
                        log::debug!("[{}] reading the lease: {e}", self.id);
                        self.core.read_failed(Instant::now());
                        Vec::new()
                    }
                };
            }
            LeaseAction::Create(rec) => self.store.create(LEADER_KEY, &wire::encode(rec)),
            LeaseAction::Takeover { revision, record }
            | LeaseAction::Renew { revision, record } => {
                self.store
                    .update(LEADER_KEY, &wire::encode(record), *revision)
            }
        };
        let outcome = match &result {
            Ok(rev) => WriteOutcome::Written(*rev),
            Err(e) if e.is_conflict() => WriteOutcome::Conflict,
            Err(e) => {
                log::debug!("[{}] lease write: {e}", self.id);
                WriteOutcome::Unknown
            }
        };
        self.core.on_result(Instant::now(), sent, action, outcome)
    }

    fn on_event(&mut self, ev: LeaseEvent, running: &mut Option<RunningLeader>) {
        match ev {
            LeaseEvent::Acquired { epoch } => {
                log::info!("[{}] acquired leadership, epoch {epoch}", self.id);
                self.shared.observe_lease_epoch(epoch);
                self.shared.set_lease_valid_until(self.core.valid_until());
                self.shared.set_leader(true);
                let (stop, stop_rx) = crossbeam_channel::bounded(0);
                let thread = LeaderThread {
                    ctx: self.leader.clone(),
                    shared: self.shared.clone(),
                    epoch,
                    stop: stop_rx,
                };
                match thread.spawn() {
                    Ok(handle) => *running = Some(RunningLeader { stop, handle }),
                    Err(e) => self.shared.report(Error::Kv(KvError::Other(format!(
                        "cannot spawn leader thread: {e}"
                    )))),
                }
            }
            LeaseEvent::Lost => {
                log::info!("[{}] lost leadership", self.id);
                self.shared.set_lease_valid_until(None);
                stop_leader(running, &self.shared);
                self.shared.set_leader(false);
            }
            LeaseEvent::Epoch(epoch) => self.shared.observe_lease_epoch(epoch),
        }
    }
}

fn stop_leader(running: &mut Option<RunningLeader>, shared: &Shared) {
    if let Some(r) = running.take() {
        drop(r.stop);
        let _ = r.handle.join();
        shared.set_leader_phase(None);
    }
}
