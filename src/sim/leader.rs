//! The leader thread of a simulated process, driven like
//! `runtime::leader`: take office (replay heartbeats, adopt published keys),
//! then per step: heartbeats in, calculator tick, deletes, then one round of
//! fenced writes, each re-checking the lease first.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::core::calculator::{Calculator, Output, Publication};
use crate::core::fence::{Fence, Step, Verdict};
use crate::names::META_KEY;
use crate::runtime::leader::REFRESH_KEY;
use crate::store::{Watch, WatchEvent};
use crate::wire::{self, AssignmentRecord, MetaRecord, WorkerRecord};

use super::ops::{Answer, Io, Kind, Thread};
use super::Env;

/// One term of leadership.
pub(crate) struct Leader {
    calc: Calculator,
    watch: Watch,
    pending: BTreeMap<String, Vec<u8>>,
    version: u64,
    deletes: VecDeque<String>,
    round: Vec<String>,
    fence: Fence,
    /// A newer leader's epoch was found in a key: this term writes no more.
    deposed: bool,
    /// Publications handed to the store in this term.
    pub published: u64,
}

impl Leader {
    /// Mirrors `LeaderThread::take_office`; `None` when the workers watch
    /// cannot be opened or the published keys cannot all be read (the
    /// runtime's thread retries a little later).
    pub fn take_office(env: &Env, io: &Io, id: &str, epoch: u64, now: Instant) -> Option<Leader> {
        let watch = io.stores.workers.watch(None).ok()?;
        let mut calc = Calculator::new(
            env.config.clone(),
            env.strategy.clone(),
            id.to_string(),
            epoch,
            now,
            env.partitions.to_vec(),
        );
        let mut replayed = false;
        while let Ok(ev) = watch.events().try_recv() {
            if ev == WatchEvent::Synced {
                replayed = true;
                break;
            }
            on_worker_event(&mut calc, now, io, ev);
        }
        let mut records = BTreeMap::new();
        let mut meta = None;
        let mut fence = Fence::new(epoch);
        let store = &io.stores.assignments;
        // Read and re-stamp every key, as `LeaderThread::restamp` does; a
        // conflict (a late write of the previous leader) ends this attempt.
        for key in store.keys().ok()? {
            let Some(entry) = store.get(&key).ok()? else {
                continue;
            };
            if key == META_KEY {
                let Ok(m) = wire::decode::<MetaRecord>(store.bucket(), &key, &entry.value) else {
                    continue;
                };
                let m = fence.restamped_meta(&m, id);
                let rev = store.update(&key, &wire::encode(&m), entry.revision).ok()?;
                fence.learn(&key, Some(rev));
                meta = Some(m);
            } else if let Ok(r) =
                wire::decode::<AssignmentRecord>(store.bucket(), &key, &entry.value)
            {
                let r = fence.restamped(&r)?;
                let rev = store.update(&key, &wire::encode(&r), entry.revision).ok()?;
                fence.learn(&key, Some(rev));
                records.insert(key, r);
            }
        }
        io.stores
            .office
            .epoch
            .fetch_max(epoch, std::sync::atomic::Ordering::SeqCst);
        calc.adopt(now, &records, meta.as_ref().map_or(0, |m| m.version));
        if replayed {
            calc.forget_unheard();
        }
        if let Some(meta) = &meta {
            calc.adopt_meta(now, meta);
        }
        Some(Leader {
            calc,
            watch,
            pending: BTreeMap::new(),
            version: 0,
            deletes: VecDeque::new(),
            round: Vec::new(),
            fence,
            deposed: false,
            published: 0,
        })
    }

    /// One step of the thread. `valid_until` is the lease as the election
    /// thread last published it.
    pub fn step(&mut self, io: &mut Io, valid_until: Option<Instant>, now: Instant) {
        let lease_valid = valid_until.is_some_and(|t| now < t);
        if let Some((kind, answer, _)) = io.due(Thread::Leader, now) {
            self.answered(kind, answer);
        }
        if io.blocked(Thread::Leader) {
            return;
        }
        if self.deletes.is_empty() && self.round.is_empty() {
            while let Ok(ev) = self.watch.events().try_recv() {
                on_worker_event(&mut self.calc, now, io, ev);
            }
            if !lease_valid || self.deposed {
                return;
            }
            for out in self.calc.tick(now) {
                self.execute(out);
            }
            self.round = self.pending.keys().rev().cloned().collect();
        }
        self.drain(io, valid_until, now);
    }

    fn drain(&mut self, io: &mut Io, valid_until: Option<Instant>, now: Instant) {
        loop {
            if io.blocked(Thread::Leader) {
                return;
            }
            let kind = if let Some(key) = self.deletes.pop_front() {
                let expected = self.fence.expected_for_delete(&key);
                Kind::Delete(key, expected)
            } else if let Some(key) = self.round.pop() {
                // A deposed leader must not write: re-check before each write.
                if self.deposed || valid_until.is_none_or(|t| now >= t) {
                    self.round.clear();
                    return;
                }
                let Some(value) = self.pending.get(&key) else {
                    continue;
                };
                match self.fence.step(&key) {
                    Step::Read => Kind::Read(key),
                    step => Kind::Write(key, value.clone(), step),
                }
            } else {
                if self.pending.is_empty() && self.version > 0 {
                    self.calc.confirm_published(self.version);
                }
                return;
            };
            if let Some((kind, answer)) = io.issue(Thread::Leader, kind, now) {
                self.answered(kind, answer);
            }
        }
    }

    fn answered(&mut self, kind: Kind, answer: Answer) {
        match (kind, answer) {
            (Kind::Read(key), Answer::Get(Ok(found))) => {
                let Some(value) = self.pending.get(&key) else {
                    return;
                };
                let found = found.as_ref().map(|e| (e.value.as_slice(), e.revision));
                match self.fence.read(&key, found, value) {
                    Verdict::Done => {
                        self.pending.remove(&key);
                    }
                    Verdict::Write => self.round.push(key),
                    Verdict::Deposed { .. } => self.deposed = true,
                }
            }
            (Kind::Write(key, ..), answer) => {
                let result = answer.write();
                self.fence.written(&key, result.as_ref().ok().copied());
                if result.is_ok() {
                    self.pending.remove(&key);
                }
            }
            (Kind::Delete(key, _), answer) => self.fence.deleted(&key, answer.write().is_ok()),
            _ => {}
        }
    }

    fn execute(&mut self, out: Output) {
        match out {
            Output::Publish(Publication {
                version,
                records,
                meta,
                ..
            }) => {
                for (worker, record) in records {
                    self.pending.insert(worker, wire::encode(&record));
                }
                self.pending
                    .insert(META_KEY.to_string(), wire::encode(&meta));
                self.version = version;
                self.published += 1;
            }
            Output::Clear(worker) => {
                self.pending.remove(&worker);
                self.deletes.push_back(worker);
            }
            // The simulated strategy never panics.
            Output::Rebalanced { .. } | Output::Died(_) | Output::Report(_) | Output::Resign => {}
        }
    }

    /// The calculator's current phase.
    pub fn phase(&self) -> crate::core::calculator::Phase {
        self.calc.phase()
    }
}

fn on_worker_event(calc: &mut Calculator, now: Instant, io: &Io, ev: WatchEvent) {
    match ev {
        WatchEvent::Put(entry) if entry.key == REFRESH_KEY => {}
        WatchEvent::Put(entry) => {
            if let Ok(rec) =
                wire::decode::<WorkerRecord>(io.stores.workers.bucket(), &entry.key, &entry.value)
            {
                calc.observe_worker(now, &entry.key, &rec);
            }
        }
        WatchEvent::Delete { key, .. } if key != REFRESH_KEY => calc.worker_gone(&key),
        _ => {}
    }
}
