//! The leader thread: watches the workers' heartbeats, runs the calculator,
//! and publishes assignments while this worker holds the lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{after, at, never, select_biased, Receiver};

use crate::core::calculator::{Calculator, Output, Publication};
use crate::names::META_KEY;
use crate::runtime::shared::Shared;
use crate::source::PartitionSource;
use crate::store::{KvError, KvStore, Watch, WatchEvent};
use crate::strategy::AssignmentStrategy;
use crate::wire::{self, AssignmentRecord, MetaRecord, WorkerRecord};
use crate::{Config, Error};

/// The shortest wait between two ticks of the calculator.
const MIN_TICK: Duration = Duration::from_millis(10);

/// Key a follower writes in the workers bucket to ask the leader to re-read
/// the partition source.
pub(crate) const REFRESH_KEY: &str = "_refresh";

/// What a leader thread needs; cloned for each term.
#[derive(Clone)]
pub(crate) struct LeaderContext {
    pub id: String,
    pub config: Config,
    pub strategy: Arc<dyn AssignmentStrategy>,
    pub source: Arc<dyn PartitionSource>,
    pub workers: Arc<dyn KvStore>,
    pub assignments: Arc<dyn KvStore>,
    pub refresh: Receiver<()>,
    /// The source's own change notifications, if it has any.
    pub changes: Option<Receiver<()>>,
    /// Re-read the source this often, if set.
    pub refresh_every: Option<Duration>,
}

pub(crate) struct LeaderThread {
    pub ctx: LeaderContext,
    pub shared: Arc<Shared>,
    pub epoch: u64,
    pub stop: Receiver<()>,
}

/// Writes not yet confirmed, retried every tick.
#[derive(Default)]
struct Pending {
    writes: BTreeMap<String, Vec<u8>>,
    version: u64,
}

impl LeaderThread {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        let name = format!("parti-leader-{}", self.ctx.id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
    }

    fn run(self) {
        let Some((mut calc, mut watch)) = self.take_office() else {
            return;
        };
        let mut pending = Pending::default();
        let retry = self.ctx.config.heartbeat_interval / 4;
        let changes = self.ctx.changes.clone().unwrap_or_else(never);
        let mut next_refresh = self.ctx.refresh_every.map(|d| Instant::now() + d);
        // A re-read that failed (e.g. KV briefly unreachable) is retried, so
        // a change notification is never lost.
        let mut refresh_retry: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let mut deadline = calc
                .next_deadline()
                .unwrap_or(now + self.ctx.config.heartbeat_interval);
            if !pending.writes.is_empty() {
                deadline = deadline.min(now + retry);
            }
            if !self.shared.lease_valid() {
                // Nothing to do until the lease is confirmed or lost.
                deadline = now + retry;
            }
            if let Some(when) = next_refresh.into_iter().chain(refresh_retry).min() {
                deadline = deadline.min(when);
            }
            // The core can keep reporting a deadline that already passed
            // while it waits on something else (e.g. a worker whose callback
            // is stuck, heard from by nobody): tick at most every
            // MIN_TICK instead of spinning.
            deadline = deadline.max(now + MIN_TICK);
            select_biased! {
                recv(self.stop) -> _ => break,
                recv(watch.events()) -> ev => match ev {
                    Ok(ev) => {
                        self.on_worker_event(&mut calc, ev);
                        // Take everything already queued before deciding.
                        while let Ok(ev) = watch.events().try_recv() {
                            self.on_worker_event(&mut calc, ev);
                        }
                    }
                    Err(_) => {
                        self.shared.report(Error::Kv(crate::store::KvError::Unavailable(
                            "workers watch ended".into(),
                        )));
                        // Ending here would leave a leader that renews its
                        // lease but never publishes: watch again (the
                        // replay re-announces every worker).
                        match self.rewatch(retry) {
                            Some(w) => watch = w,
                            None => break,
                        }
                    }
                },
                recv(self.ctx.refresh) -> _ => refresh_retry = self.refresh(&mut calc),
                recv(changes) -> _ => {
                    // One read covers every notification queued so far.
                    while changes.try_recv().is_ok() {}
                    refresh_retry = self.refresh(&mut calc);
                }
                recv(at(deadline)) -> _ => {}
            }
            // Not acting on an unconfirmed lease, but not ending either: a
            // renewal that was only slow makes it valid again, and the
            // election thread, which alone knows, stops this thread when the
            // term is over. (Ending here left the lease held and renewed by
            // a leader that never published again.)
            if refresh_retry.is_some_and(|when| Instant::now() >= when) {
                refresh_retry = self.refresh(&mut calc);
            }
            if let (Some(when), Some(every)) = (next_refresh, self.ctx.refresh_every) {
                if Instant::now() >= when {
                    refresh_retry = self.refresh(&mut calc);
                    next_refresh = Some(Instant::now() + every);
                }
            }
            if !self.shared.lease_valid() {
                continue;
            }
            let outputs = calc.tick(Instant::now());
            for out in outputs {
                self.execute(&mut calc, &mut pending, out);
            }
            // Show the phase while the writes are under way (an emergency
            // lasts until its assignment is written).
            self.shared.set_leader_phase(Some(calc.phase()));
            self.flush(&mut calc, &mut pending);
            self.shared.set_leader_phase(Some(calc.phase()));
        }
    }

    /// A new workers watch, retried until it works; `None` when told to stop.
    fn rewatch(&self, retry: std::time::Duration) -> Option<Watch> {
        loop {
            match self.ctx.workers.watch(None) {
                Ok(w) => return Some(w),
                Err(e) => self.shared.report(Error::Kv(e)),
            }
            if !self.pause(retry) {
                return None;
            }
        }
    }

    /// Learns the group as it is: live workers (the watch's replay) and what
    /// the previous leader published.
    fn take_office(&self) -> Option<(Calculator, Watch)> {
        let ctx = &self.ctx;
        // Giving up here would leave the lease held by a leader that never
        // publishes: retry until it works or the term ends.
        let retry = ctx.config.heartbeat_interval / 4;
        let watch = self.rewatch(retry)?;
        // Acting on an empty list would revoke every partition of the group,
        // so a leader that cannot read its source waits (the published
        // assignments stay in force meanwhile).
        let partitions = loop {
            match ctx
                .source
                .partitions_reporting(&mut |e| self.shared.report(e))
            {
                Ok(p) => break p,
                Err(e) => {
                    self.shared.report(e);
                    select_biased! {
                        recv(self.stop) -> _ => return None,
                        recv(after(ctx.config.heartbeat_interval)) -> _ => {}
                    }
                }
            }
        };
        let now = Instant::now();
        let mut calc = Calculator::new(
            ctx.config.clone(),
            ctx.strategy.clone(),
            ctx.id.clone(),
            self.epoch,
            now,
            partitions,
        );
        let replay_deadline = now + ctx.config.operation_timeout * 2;
        loop {
            select_biased! {
                recv(self.stop) -> _ => return None,
                recv(watch.events()) -> ev => match ev {
                    Ok(WatchEvent::Synced) => break,
                    Ok(ev) => self.on_worker_event(&mut calc, ev),
                    Err(_) => return None,
                },
                recv(at(replay_deadline)) -> _ => {
                    log::warn!("[{}] workers replay not finished in time; going on", ctx.id);
                    break;
                }
            }
        }
        // Adopting a partial view would let this leader grant partitions
        // that a worker whose key it missed still holds.
        let (records, meta) = loop {
            match self.read_assignments() {
                Ok(read) => break read,
                Err(e) => self.shared.report(Error::Kv(e)),
            }
            if !self.pause(retry) {
                return None;
            }
        };
        calc.adopt(
            Instant::now(),
            &records,
            meta.as_ref().map_or(0, |m| m.version),
        );
        if let Some(meta) = &meta {
            calc.adopt_departed(Instant::now(), &meta.departed);
        }
        log::info!(
            "[{}] leading epoch {}: {} workers known, {} assignment keys, version {}",
            ctx.id,
            self.epoch,
            calc.members().len(),
            records.len(),
            calc.version()
        );
        Some((calc, watch))
    }

    /// Waits `d` unless told to stop (`false`).
    fn pause(&self, d: std::time::Duration) -> bool {
        select_biased! {
            recv(self.stop) -> _ => false,
            recv(at(Instant::now() + d)) -> _ => true,
        }
    }

    /// Every published key, or the first error (a key deleted meanwhile is
    /// simply absent).
    fn read_assignments(
        &self,
    ) -> Result<(BTreeMap<String, AssignmentRecord>, Option<MetaRecord>), KvError> {
        let store = &self.ctx.assignments;
        let mut records = BTreeMap::new();
        let mut meta = None;
        for key in store.keys()? {
            let Some(entry) = store.get(&key)? else {
                continue;
            };
            if key == META_KEY {
                match wire::decode::<MetaRecord>(store.bucket(), &key, &entry.value) {
                    Ok(m) => meta = Some(m),
                    Err(e) => self.shared.report(e),
                }
                continue;
            }
            match wire::decode::<AssignmentRecord>(store.bucket(), &key, &entry.value) {
                Ok(r) => {
                    records.insert(key, r);
                }
                Err(e) => self.shared.report(e),
            }
        }
        Ok((records, meta))
    }

    fn on_worker_event(&self, calc: &mut Calculator, ev: WatchEvent) {
        match ev {
            WatchEvent::Put(entry) if entry.key == REFRESH_KEY => {
                // A failure here is retried by the next request or period.
                let _ = self.refresh(calc);
            }
            WatchEvent::Put(entry) => {
                match wire::decode::<WorkerRecord>(
                    self.ctx.workers.bucket(),
                    &entry.key,
                    &entry.value,
                ) {
                    Ok(rec) => calc.observe_worker(Instant::now(), &entry.key, &rec),
                    Err(e) => self.shared.report(e),
                }
            }
            WatchEvent::Delete { key, .. } if key != REFRESH_KEY => calc.worker_gone(&key),
            _ => {}
        }
    }

    /// Re-reads the source; on failure, returns when to try again.
    fn refresh(&self, calc: &mut Calculator) -> Option<Instant> {
        match self
            .ctx
            .source
            .partitions_reporting(&mut |e| self.shared.report(e))
        {
            Ok(p) => {
                calc.set_partitions(p);
                None
            }
            Err(e) => {
                self.shared.report(e);
                Some(Instant::now() + self.ctx.config.heartbeat_interval)
            }
        }
    }

    fn execute(&self, calc: &mut Calculator, pending: &mut Pending, out: Output) {
        let id = &self.ctx.id;
        match out {
            Output::Publish(Publication {
                version,
                records,
                meta,
                ..
            }) => {
                log::debug!(
                    "[{id}] publishing v{version} to {:?}",
                    records.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>()
                );
                for (worker, record) in records {
                    pending.writes.insert(worker, wire::encode(&record));
                }
                pending
                    .writes
                    .insert(META_KEY.to_string(), wire::encode(&meta));
                pending.version = version;
            }
            Output::Clear(worker) => {
                pending.writes.remove(&worker);
                if let Err(e) = self.ctx.assignments.delete(&worker, None) {
                    log::warn!("[{id}] clearing {worker}: {e}");
                }
            }
            Output::Rebalanced {
                kind,
                moved,
                workers,
            } => {
                log::info!(
                    "[{id}] rebalance {kind}: {moved} partitions move, {workers} workers, after version {}",
                    calc.version()
                );
                self.shared.metrics.rebalance(kind);
            }
            Output::Died(workers) => log::warn!("[{id}] workers declared dead: {workers:?}"),
            Output::Report(e) => self.shared.report(e),
        }
    }

    /// Writes what is pending; confirms the publication once all landed.
    fn flush(&self, calc: &mut Calculator, pending: &mut Pending) {
        if pending.writes.is_empty() {
            return;
        }
        let keys: Vec<String> = pending.writes.keys().cloned().collect();
        for key in keys {
            // A deposed leader must not write: re-check the lease each time.
            if !self.shared.lease_valid() {
                return;
            }
            let Some(value) = pending.writes.get(&key) else {
                continue;
            };
            match self.ctx.assignments.put(&key, value) {
                Ok(_) => {
                    pending.writes.remove(&key);
                }
                Err(e) => log::debug!("[{}] publishing {key}: {e}", self.ctx.id),
            }
        }
        if pending.writes.is_empty() {
            calc.confirm_published(pending.version);
        }
    }
}
