//! The leader thread of a simulated process, driven like
//! `runtime::leader`: take office (replay heartbeats, adopt published keys),
//! then per step: heartbeats in, calculator tick, deletes, then one round of
//! puts, each re-checking the lease first.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use crate::core::calculator::{Calculator, Output, Publication};
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
        while let Ok(ev) = watch.events().try_recv() {
            if ev == WatchEvent::Synced {
                break;
            }
            on_worker_event(&mut calc, now, io, ev);
        }
        let mut records = BTreeMap::new();
        let mut meta_version = 0;
        let store = &io.stores.assignments;
        for key in store.keys().ok()? {
            let Some(entry) = store.get(&key).ok()? else {
                continue;
            };
            if key == META_KEY {
                if let Ok(m) = wire::decode::<MetaRecord>(store.bucket(), &key, &entry.value) {
                    meta_version = m.version;
                }
            } else if let Ok(r) =
                wire::decode::<AssignmentRecord>(store.bucket(), &key, &entry.value)
            {
                records.insert(key, r);
            }
        }
        calc.adopt(now, &records, meta_version);
        Some(Leader {
            calc,
            watch,
            pending: BTreeMap::new(),
            version: 0,
            deletes: VecDeque::new(),
            round: Vec::new(),
            published: 0,
        })
    }

    /// One step of the thread. `valid_until` is the lease as the election
    /// thread last published it.
    pub fn step(
        &mut self,
        env: &Env,
        io: &mut Io,
        id: &str,
        valid_until: Option<Instant>,
        now: Instant,
    ) {
        let lease_valid = valid_until.is_some_and(|t| now < t);
        if let Some((kind, answer, _)) = io.due(id, Thread::Leader, now) {
            self.answered(kind, answer);
        }
        if io.blocked(Thread::Leader) {
            return;
        }
        if self.deletes.is_empty() && self.round.is_empty() {
            while let Ok(ev) = self.watch.events().try_recv() {
                on_worker_event(&mut self.calc, now, io, ev);
            }
            if !lease_valid {
                return;
            }
            for out in self.calc.tick(now) {
                self.execute(out);
            }
            self.round = self.pending.keys().rev().cloned().collect();
        }
        self.drain(env, io, id, valid_until, now);
    }

    fn drain(
        &mut self,
        _env: &Env,
        io: &mut Io,
        id: &str,
        valid_until: Option<Instant>,
        now: Instant,
    ) {
        loop {
            if io.blocked(Thread::Leader) {
                return;
            }
            let kind = if let Some(key) = self.deletes.pop_front() {
                Kind::Delete(key)
            } else if let Some(key) = self.round.pop() {
                // A deposed leader must not write: re-check before each put.
                if valid_until.is_none_or(|t| now >= t) {
                    self.round.clear();
                    return;
                }
                let Some(value) = self.pending.get(&key) else {
                    continue;
                };
                Kind::Put(key, value.clone())
            } else {
                if self.pending.is_empty() && self.version > 0 {
                    self.calc.confirm_published(self.version);
                }
                return;
            };
            if let Some((kind, answer)) = io.issue(id, Thread::Leader, kind, now) {
                self.answered(kind, answer);
            }
        }
    }

    fn answered(&mut self, kind: Kind, answer: Answer) {
        if let (Kind::Put(key, _), Ok(_)) = (&kind, answer.write()) {
            self.pending.remove(key);
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
            Output::Rebalanced { .. } | Output::Died(_) | Output::Report(_) => {}
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
