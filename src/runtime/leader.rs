//! The leader thread: watches the workers' heartbeats, runs the calculator,
//! and publishes assignments while this worker holds the lease.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{after, at, never, select_biased, Receiver, Sender};

use crate::core::calculator::{Calculator, Output, Publication};
use crate::core::fence::{Fence, Step, Verdict};
use crate::error::catch_plugin;
use crate::names::META_KEY;
use crate::runtime::shared::Shared;
use crate::source::PartitionSource;
use crate::store::{KvError, KvStore, Revision, Watch, WatchEvent};
use crate::strategy::AssignmentStrategy;
use crate::wire::{self, AssignmentRecord, MetaRecord, WorkerRecord};
use crate::{Config, Error, Partition};

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
    /// Told when this term ends because the user's plug-in code panicked:
    /// the election thread then hands the lease to another worker.
    pub resign: Sender<()>,
    pub resigning: Cell<bool>,
}

/// Writes not yet confirmed, retried every tick, and what this term knows
/// of the keys' revisions.
struct Pending {
    writes: BTreeMap<String, Vec<u8>>,
    version: u64,
    fence: Fence,
    /// A newer leader's epoch found in a key: this term writes no more.
    deposed: Option<u64>,
}

/// What a new leader read of the assignments bucket: records and summary,
/// with the revision of every key.
struct Adopted {
    records: BTreeMap<String, (AssignmentRecord, Revision)>,
    meta: Option<(MetaRecord, Revision)>,
}

impl LeaderThread {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        let name = format!("parti-leader-{}", self.ctx.id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
    }

    fn run(self) {
        self.lead();
        if self.resigning.get() {
            let _ = self.resign.send(());
        }
    }

    fn lead(&self) {
        let Some((mut calc, mut watch, fence)) = self.take_office() else {
            return;
        };
        let mut pending = Pending {
            writes: BTreeMap::new(),
            version: 0,
            fence,
            deposed: None,
        };
        let retry = self.ctx.config.heartbeat_interval / 4;
        let mut changes = self.ctx.changes.clone().unwrap_or_else(never);
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
                recv(changes) -> msg => match msg {
                    Ok(()) => {
                        // One read covers every notification queued so far.
                        while changes.try_recv().is_ok() {}
                        refresh_retry = self.refresh(&mut calc);
                    }
                    // The source dropped its sender: it will signal nothing
                    // more, and a disconnected channel is always ready.
                    Err(_) => changes = never(),
                },
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
            if self.resigning.get() {
                return;
            }
            if !self.shared.lease_valid() || pending.deposed.is_some() {
                continue;
            }
            let outputs = calc.tick(Instant::now());
            for out in outputs {
                self.execute(&mut calc, &mut pending, out);
            }
            // Show the phase while the writes are under way (an emergency
            // lasts until its assignment is written).
            self.shared.set_leader_phase(Some(calc.phase()));
            if self.resigning.get() {
                return;
            }
            self.flush(&mut calc, &mut pending);
            self.shared.set_leader_phase(Some(calc.phase()));
        }
    }

    /// Reads the partition source, catching a panic in it: the term then
    /// ends and the lease goes to another worker.
    fn read_source(&self) -> Result<Vec<Partition>, Error> {
        let result = catch_plugin("partition source", || {
            self.ctx
                .source
                .partitions_reporting(&mut |e| self.shared.report(e))
        });
        if matches!(result, Err(Error::PluginPanicked { .. })) {
            self.resigning.set(true);
        }
        result
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
    fn take_office(&self) -> Option<(Calculator, Watch, Fence)> {
        let ctx = &self.ctx;
        // Giving up here would leave the lease held by a leader that never
        // publishes: retry until it works or the term ends.
        let retry = ctx.config.heartbeat_interval / 4;
        let watch = self.rewatch(retry)?;
        // Acting on an empty list would revoke every partition of the group,
        // so a leader that cannot read its source waits (the published
        // assignments stay in force meanwhile).
        let partitions = loop {
            match self.read_source() {
                Ok(p) => break p,
                Err(e) => {
                    self.shared.report(e);
                    if self.resigning.get() {
                        return None;
                    }
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
        let mut replayed = false;
        loop {
            select_biased! {
                recv(self.stop) -> _ => return None,
                recv(watch.events()) -> ev => match ev {
                    Ok(WatchEvent::Synced) => {
                        replayed = true;
                        break;
                    }
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
        // that a worker whose key it missed still holds; adopting keys the
        // previous leader can still overwrite would let its late writes
        // undo this leader's decisions. Read and re-stamp until both hold.
        let mut fence = Fence::new(self.epoch);
        let adopted = loop {
            match self
                .read_assignments()
                .and_then(|read| self.restamp(&mut fence, read))
            {
                Ok(adopted) => break adopted,
                Err(e) => self.shared.report(Error::Kv(e)),
            }
            if !self.pause(retry) {
                return None;
            }
        };
        let records: BTreeMap<String, AssignmentRecord> = adopted
            .records
            .into_iter()
            .map(|(k, (r, _))| (k, r))
            .collect();
        let meta = adopted.meta.map(|(m, _)| m);
        calc.adopt(
            Instant::now(),
            &records,
            meta.as_ref().map_or(0, |m| m.version),
        );
        if replayed {
            calc.forget_unheard();
        }
        if let Some(meta) = &meta {
            calc.adopt_meta(Instant::now(), meta);
        }
        log::info!(
            "[{}] leading epoch {}: {} workers known, {} assignment keys, version {}",
            ctx.id,
            self.epoch,
            calc.members().len(),
            records.len(),
            calc.version()
        );
        Some((calc, watch, fence))
    }

    /// Rewrites every adopted key with this leader's epoch, each a
    /// compare-and-set on the revision just read: a write the previous
    /// leader still has in flight then fails instead of landing after this
    /// leader has decided on what it read. A conflict means such a write
    /// landed in between: the caller reads again.
    fn restamp(&self, fence: &mut Fence, mut read: Adopted) -> Result<Adopted, KvError> {
        let store = &self.ctx.assignments;
        for (key, (record, revision)) in read.records.iter_mut() {
            let Some(stamped) = fence.restamped(record) else {
                return Err(KvError::Other(format!(
                    "{key} written by a newer leader (epoch {})",
                    record.epoch
                )));
            };
            *revision = store.update(key, &wire::encode(&stamped), *revision)?;
            *record = stamped;
            fence.learn(key, Some(*revision));
        }
        if let Some((meta, revision)) = &mut read.meta {
            let stamped = fence.restamped_meta(meta, &self.ctx.id);
            *revision = store.update(META_KEY, &wire::encode(&stamped), *revision)?;
            *meta = stamped;
            fence.learn(META_KEY, Some(*revision));
        }
        Ok(read)
    }

    /// Waits `d` unless told to stop (`false`).
    fn pause(&self, d: std::time::Duration) -> bool {
        select_biased! {
            recv(self.stop) -> _ => false,
            recv(at(Instant::now() + d)) -> _ => true,
        }
    }

    /// Every published key with its revision, or the first error (a key
    /// deleted meanwhile is simply absent; a corrupt one is reported and left
    /// for the first write to replace).
    fn read_assignments(&self) -> Result<Adopted, KvError> {
        let store = &self.ctx.assignments;
        let mut read = Adopted {
            records: BTreeMap::new(),
            meta: None,
        };
        for key in store.keys()? {
            let Some(entry) = store.get(&key)? else {
                continue;
            };
            if key == META_KEY {
                match wire::decode::<MetaRecord>(store.bucket(), &key, &entry.value) {
                    Ok(m) => read.meta = Some((m, entry.revision)),
                    Err(e) => self.shared.report(e),
                }
                continue;
            }
            match wire::decode::<AssignmentRecord>(store.bucket(), &key, &entry.value) {
                Ok(r) => {
                    read.records.insert(key, (r, entry.revision));
                }
                Err(e) => self.shared.report(e),
            }
        }
        Ok(read)
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
        match self.read_source() {
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
                let expected = pending.fence.expected_for_delete(&worker);
                let result = self.ctx.assignments.delete(&worker, expected);
                pending.fence.deleted(&worker, result.is_ok());
                if let Err(e) = result {
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
            Output::Resign => self.resigning.set(true),
        }
    }

    /// Writes what is pending; confirms the publication once all landed.
    fn flush(&self, calc: &mut Calculator, pending: &mut Pending) {
        if pending.writes.is_empty() || pending.deposed.is_some() {
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
            match self.write_fenced(&mut pending.fence, &key, value) {
                Ok(()) => {
                    pending.writes.remove(&key);
                }
                Err(WriteError::Deposed(epoch)) => {
                    log::warn!(
                        "[{}] {key} holds epoch {epoch}, newer than {}: writing no more",
                        self.ctx.id,
                        self.epoch
                    );
                    pending.deposed = Some(epoch);
                    return;
                }
                Err(WriteError::Kv(e)) => log::debug!("[{}] publishing {key}: {e}", self.ctx.id),
            }
        }
        if pending.writes.is_empty() {
            calc.confirm_published(pending.version);
        }
    }

    /// One compare-and-set write of `key`, reading it first when its
    /// revision is unknown.
    fn write_fenced(&self, fence: &mut Fence, key: &str, value: &[u8]) -> Result<(), WriteError> {
        let store = &self.ctx.assignments;
        let mut step = fence.step(key);
        if step == Step::Read {
            let found = store.get(key).map_err(WriteError::Kv)?;
            let found = found.as_ref().map(|e| (e.value.as_slice(), e.revision));
            match fence.read(key, found, value) {
                Verdict::Done => return Ok(()),
                Verdict::Deposed { epoch } => return Err(WriteError::Deposed(epoch)),
                Verdict::Write => step = fence.step(key),
            }
        }
        let result = match step {
            Step::Create => store.create(key, value),
            Step::Update(rev) => store.update(key, value, rev),
            Step::Read => {
                return Err(WriteError::Kv(KvError::Other(
                    "revision unknown after a read".into(),
                )))
            }
        };
        fence.written(key, result.as_ref().ok().copied());
        result.map(|_| ()).map_err(WriteError::Kv)
    }
}

/// Why a fenced write did not land.
enum WriteError {
    /// A newer leader wrote the key (its epoch).
    Deposed(u64),
    Kv(KvError),
}
