//! Leading: the calculator's decisions become fenced writes. Deletes go
//! first; then one pass over the pending keys, each a compare-and-set on the
//! revision the fence knows (read first when it does not), each only while
//! the lease can be trusted. A publication is confirmed to the calculator
//! once all its keys landed; failed keys are retried in the next pass.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use crate::core::calculator::{Output, Publication};
use crate::core::fence::{Step, Verdict};
use crate::core::ops::{Bucket, Op, Reply};
use crate::names::META_KEY;
use crate::wire::{self, AssignmentRecord, MetaRecord};

use super::{InFlight, LeaderEffect, LeaderNode, Office};

impl LeaderNode {
    /// The KV operation to perform now, if any (at most one in flight).
    pub(crate) fn poll_op(&mut self, now: Instant) -> Option<Op> {
        self.now = now;
        if self.in_flight.is_some() {
            return None;
        }
        if self.source_wanted && !self.source_asked {
            self.source_wanted = false;
            self.source_asked = true;
            self.effects.push_back(LeaderEffect::ReadSource);
        }
        match self.office {
            Office::Read(_) => return self.office_op(),
            Office::Leading => {}
            _ => return None,
        }
        if self.deposed.is_some() {
            return None;
        }
        if let Some(op) = self.next_delete().or_else(|| self.control_op(now)) {
            return Some(op);
        }
        if self.round.is_empty() {
            self.tick(now);
            if let Some(op) = self.next_delete() {
                return Some(op);
            }
            // One pass per retry period at most (a new publication starts
            // one at once): keys and deletes that failed wait for the next
            // pass.
            let work = !self.pending.is_empty() || !self.undeleted.is_empty();
            if work && self.retry_at.is_none_or(|t| now >= t) {
                self.retry_at = Some(now + self.retry_every());
                self.deletes.extend(self.undeleted.drain(..));
                self.round = self.ordered_round();
                if let Some(op) = self.next_delete() {
                    return Some(op);
                }
            }
        }
        self.next_write(now)
    }

    /// The pending keys, those that grant nothing another key still shows
    /// first: their writes (revocations, a restarted worker's fresh key)
    /// are what the others wait for.
    fn ordered_round(&self) -> VecDeque<String> {
        let (free, held): (Vec<String>, Vec<String>) =
            self.pending.keys().cloned().partition(|k| !self.clashes(k));
        free.into_iter().chain(held).collect()
    }

    /// Whether writing `key` now would show one of its partitions under a
    /// second worker.
    fn clashes(&self, key: &str) -> bool {
        self.writing
            .get(key)
            .is_some_and(|ids| self.view.clashes(key, ids))
    }

    /// Clearing a dead or departed worker's key comes before any write.
    fn next_delete(&mut self) -> Option<Op> {
        let key = self.deletes.pop_front()?;
        let expected = self.fence.expected_for_delete(&key);
        self.in_flight = Some(InFlight::Delete(key.clone()));
        Some(Op::Delete {
            bucket: Bucket::Assignments,
            key,
            expected,
        })
    }

    fn next_write(&mut self, now: Instant) -> Option<Op> {
        while let Some(key) = self.round.pop_front() {
            // A deposed leader must not write: re-check before each write.
            if !self.lease_valid(now) {
                self.round.clear();
                return None;
            }
            let Some(value) = self.pending.get(&key) else {
                continue;
            };
            // Reported when published; sending it would get the connection
            // closed by the server.
            if value.len() > wire::MAX_RECORD_BYTES {
                continue;
            }
            if self.clashes(&key) {
                // Stays pending: the next pass tries again, after the key
                // that still shows the partition was rewritten or deleted.
                log::debug!(
                    "[{}] {key} waits: a partition still shows elsewhere",
                    self.p.id
                );
                continue;
            }
            let bucket = Bucket::Assignments;
            let op = match self.fence.step(&key) {
                Step::Read => {
                    self.in_flight = Some(InFlight::FenceRead(key.clone()));
                    Op::Get { bucket, key }
                }
                Step::Create => {
                    let value = value.clone();
                    self.in_flight = Some(InFlight::Write(key.clone()));
                    Op::Create { bucket, key, value }
                }
                Step::Update(revision) => {
                    let value = value.clone();
                    self.in_flight = Some(InFlight::Write(key.clone()));
                    Op::Update {
                        bucket,
                        key,
                        value,
                        revision,
                    }
                }
            };
            return Some(op);
        }
        if self.pending.is_empty() && self.unconfirmed {
            self.unconfirmed = false;
            if let Some(calc) = self.calc.as_mut() {
                calc.confirm_published(self.version);
            }
            self.show_phase();
        }
        None
    }

    fn tick(&mut self, now: Instant) {
        // Once per instant: the calculator's decisions only change with time
        // or input, and a pass over the writes answered at once (as the
        // simulator's link may answer) must not tick again and again.
        if !self.lease_valid(now) || self.last_tick.is_some_and(|t| t >= now) {
            return;
        }
        self.last_tick = Some(now);
        let Some(calc) = self.calc.as_mut() else {
            return;
        };
        let outputs = calc.tick(now);
        for out in outputs {
            self.execute(out);
        }
        self.show_phase();
        self.measure_unowned(now);
    }

    fn show_phase(&mut self) {
        let phase = self.phase();
        if phase != self.phase {
            self.phase = phase;
            if let Some(p) = phase {
                self.effects.push_back(LeaderEffect::Phase(p));
                self.measure_phase(self.now, p);
            }
        }
    }

    fn execute(&mut self, out: Output) {
        let id = &self.p.id;
        match out {
            Output::Publish(Publication {
                version,
                reason,
                records,
                meta,
            }) => {
                log::debug!(
                    "[{id}] publishing v{version} ({reason}) to {:?}",
                    records.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>()
                );
                for (worker, record) in &records {
                    let ids = record.partitions.iter().map(|p| p.id.clone()).collect();
                    self.undeleted.retain(|k| k != worker);
                    self.writing.insert(worker.clone(), ids);
                }
                let encoded = records
                    .iter()
                    .map(|(w, r)| (w.clone(), wire::encode(r)))
                    .chain([(META_KEY.to_string(), wire::encode(&meta))]);
                for (key, value) in encoded {
                    if let Err(e) = wire::check_size(&self.p.buckets.1, &key, &value) {
                        self.effects.push_back(LeaderEffect::Report(e));
                    }
                    self.pending.insert(key, value);
                }
                self.effects
                    .push_back(LeaderEffect::Parked(meta.parked.len()));
                self.version = version;
                self.unconfirmed = true;
                self.retry_at = None;
                self.published += 1;
            }
            Output::Clear(worker) => {
                self.pending.remove(&worker);
                self.writing.remove(&worker);
                if !self.deletes.contains(&worker) {
                    self.deletes.push_back(worker);
                }
            }
            Output::Rebalanced {
                kind,
                moved,
                workers,
            } => {
                log::info!(
                    "[{id}] rebalance {kind}: {moved} partitions move, {workers} workers, after version {}",
                    self.calc.as_ref().map_or(0, |c| c.version())
                );
                self.effects.push_back(LeaderEffect::Rebalanced(kind));
                self.measure_rebalanced(self.now);
            }
            Output::Died(workers) => log::warn!("[{id}] workers declared dead: {workers:?}"),
            Output::Report(e) => self.effects.push_back(LeaderEffect::Report(e)),
            Output::Resign => self.effects.push_back(LeaderEffect::Resign),
        }
    }

    /// The answer to the operation last returned by [`poll_op`](Self::poll_op).
    pub(crate) fn handle_reply(&mut self, now: Instant, reply: Reply) {
        self.now = now;
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        let id = &self.p.id;
        match flight {
            InFlight::Keys | InFlight::ReadKey(_) | InFlight::Restamp(_) => {
                self.office_reply(flight, reply)
            }
            InFlight::Control => self.control_reply(reply),
            InFlight::Delete(key) => {
                let ok = reply.error().is_none();
                if let Some(e) = reply.error() {
                    log::warn!("[{id}] clearing {key}: {e}");
                }
                self.fence.deleted(&key, ok);
                if ok {
                    self.view.deleted(&key);
                } else if !self.pending.contains_key(&key) {
                    // Until it is gone, the record shows partitions others
                    // are waiting for (a new record replaces it instead).
                    self.undeleted.push(key);
                }
            }
            InFlight::FenceRead(key) => {
                let Reply::Entry(Ok(found)) = reply else {
                    log::debug!("[{id}] reading {key} before writing it failed");
                    return;
                };
                let Some(value) = self.pending.get(&key) else {
                    return;
                };
                if key != META_KEY {
                    let shown = found.as_ref().map(|e| {
                        wire::decode::<AssignmentRecord>(&self.p.buckets.1, &key, &e.value)
                    });
                    match shown {
                        None => self.view.read(&key, None),
                        Some(Ok(r)) => self.view.read(&key, Some(ids_of(&r))),
                        // Not a parti record (a third party wrote it): said,
                        // then replaced by the write that follows.
                        Some(Err(e)) => self.effects.push_back(LeaderEffect::Report(e)),
                    }
                }
                let twin = found
                    .as_ref()
                    .filter(|_| key == META_KEY)
                    .and_then(|e| {
                        wire::decode::<MetaRecord>(&self.p.buckets.1, &key, &e.value).ok()
                    })
                    .filter(|m| super::outranked::twin(m, self.epoch, &self.p.id));
                if let Some(meta) = twin {
                    // Another term writes under this epoch: stop, as for a
                    // newer one, until the lease decides.
                    self.deposed = Some(self.epoch);
                    self.twin_found(&meta.leader);
                    return;
                }
                let found = found.as_ref().map(|e| (e.value.as_slice(), e.revision));
                match self.fence.read(&key, found, value) {
                    Verdict::Done => {
                        self.pending.remove(&key);
                        self.writing.remove(&key);
                    }
                    Verdict::Write => self.round.push_front(key),
                    Verdict::Deposed { epoch } => {
                        log::warn!(
                            "[{id}] {key} holds epoch {epoch}, newer than {}: writing no more",
                            self.epoch
                        );
                        self.deposed = Some(epoch);
                        self.outranked_by(epoch);
                    }
                }
            }
            InFlight::Write(key) => {
                let result = match reply {
                    Reply::Written(r) => r,
                    _ => return,
                };
                self.fence.written(&key, result.as_ref().ok().copied());
                if let Some(ids) = self.writing.get(&key) {
                    self.view.written(&key, ids, result.is_ok());
                }
                match result {
                    Ok(_) => {
                        self.pending.remove(&key);
                        self.writing.remove(&key);
                    }
                    Err(e) => log::debug!("[{id}] publishing {key}: {e}"),
                }
            }
        }
    }

    /// What the shell should do next.
    pub(crate) fn poll_effect(&mut self) -> Option<LeaderEffect> {
        self.effects.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) at the latest
    /// (`None`: nothing is due until an input comes).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let now = self.now;
        let office = match self.office {
            Office::Replay { until } => Some(until),
            Office::Retry(at) => Some(at),
            _ => None,
        };
        let lease = self.lease_valid(now);
        let calc = self
            .calc
            .as_ref()
            .filter(|_| lease && matches!(self.office, Office::Leading) && self.deposed.is_none())
            // Exact: a deadline that passed is work a tick does now.
            .and_then(|c| c.next_deadline());
        let work = !self.pending.is_empty() || !self.undeleted.is_empty();
        let writes = self.retry_at.filter(|_| lease && work);
        let control = self.control.retry_at();
        [
            office,
            calc,
            writes,
            self.next_refresh,
            self.source_retry,
            control,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// The partition ids a record lists.
pub(super) fn ids_of(record: &AssignmentRecord) -> BTreeSet<String> {
    record.partitions.iter().map(|p| p.id.clone()).collect()
}
