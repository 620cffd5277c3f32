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
    /// Terms in a row that ended because the leader's plug-in code panicked.
    pub resignations: u32,
}

struct RunningLeader {
    stop: Sender<()>,
    handle: JoinHandle<()>,
    resigned: Receiver<()>,
}

/// How long a worker whose plug-in code panicked `n` terms in a row stays
/// out of the election: two lease TTLs, doubling, at most 64.
fn sit_out(ttl: Duration, n: u32) -> Duration {
    ttl * 2u32.pow(n.min(5) + 1)
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
            let resigned = running
                .as_ref()
                .map(|r| r.resigned.clone())
                .unwrap_or_else(never);
            let mut lease_events = Vec::new();
            select_biased! {
                recv(self.stop) -> _ => break,
                recv(resigned) -> _ => self.resign(&mut running),
                recv(events) -> ev => match ev {
                    Ok(WatchEvent::Put(entry)) => {
                        let rec = self.lease_seen(&entry);
                        lease_events = self.core.observe(Instant::now(), entry.revision, Some(rec));
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
                            Some(e) => (e.revision, Some(self.lease_seen(&e))),
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

    /// The leader's plug-in code panicked: hand the lease over at once and
    /// stay out of the election for a while, so that a healthy worker leads.
    fn resign(&mut self, running: &mut Option<RunningLeader>) {
        stop_leader(running, &self.shared);
        let until = Instant::now() + sit_out(self.leader.config.election_ttl, self.resignations);
        self.resignations += 1;
        if let Some(revision) = self.core.resign_until(until) {
            if let Err(e) = self.store.delete(LEADER_KEY, Some(revision)) {
                log::debug!("[{}] releasing the lease: {e}", self.id);
            }
        }
        log::warn!(
            "[{}] resigned the lease after a panic in plug-in code; out of the election for {:?}",
            self.id,
            until.saturating_duration_since(Instant::now())
        );
        self.shared.set_lease_valid_until(None);
        self.shared.set_leader(false);
    }

    /// The lease in `entry`; one that cannot be trusted is reported and
    /// counts as held by nobody known (taken over after a TTL).
    fn lease_seen(&self, entry: &crate::store::Entry) -> LeaderRecord {
        let (rec, err) = wire::lease_or_nobody(
            self.store.bucket(),
            &entry.key,
            &entry.value,
            entry.revision,
        );
        if let Some(e) = err {
            self.shared.report(e);
        }
        rec
    }

    fn on_event(&mut self, ev: LeaseEvent, running: &mut Option<RunningLeader>) {
        match ev {
            LeaseEvent::Acquired { epoch } => {
                log::info!("[{}] acquired leadership, epoch {epoch}", self.id);
                self.shared.observe_lease_epoch(epoch);
                self.shared.set_lease_valid_until(self.core.valid_until());
                self.shared.set_leader(true);
                let (stop, stop_rx) = crossbeam_channel::bounded(0);
                let (resign, resigned) = crossbeam_channel::bounded(1);
                let thread = LeaderThread {
                    ctx: self.leader.clone(),
                    shared: self.shared.clone(),
                    epoch,
                    stop: stop_rx,
                    resign,
                    resigning: Default::default(),
                };
                match thread.spawn() {
                    Ok(handle) => {
                        *running = Some(RunningLeader {
                            stop,
                            handle,
                            resigned,
                        })
                    }
                    Err(e) => self.shared.report(Error::Kv(KvError::Other(format!(
                        "cannot spawn leader thread: {e}"
                    )))),
                }
            }
            LeaseEvent::Lost => {
                log::info!("[{}] lost leadership", self.id);
                // A term that ended without a panic.
                self.resignations = 0;
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
