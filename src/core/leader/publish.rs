//! Leading: the calculator's decisions become fenced writes. Deletes go
//! first; then one pass over the pending keys, each a compare-and-set on the
//! revision the fence knows (read first when it does not), each only while
//! the lease can be trusted. A publication is confirmed to the calculator
//! once all its keys landed; failed keys are retried in the next pass.

use std::time::{Duration, Instant};

use crate::core::calculator::{Output, Publication};
use crate::core::fence::{Step, Verdict};
use crate::core::ops::{Bucket, Op, Reply};
use crate::names::META_KEY;
use crate::wire;

use super::{InFlight, LeaderEffect, LeaderNode, Office};

/// The calculator can report a deadline that already passed while it waits
/// on something a tick cannot change (e.g. a blind leader's death verdicts):
/// such a deadline is taken as this much later, not as "now" again.
const PAST_DEADLINE_DELAY: Duration = Duration::from_millis(10);

impl LeaderNode {
    /// The KV operation to perform now, if any (at most one in flight).
    pub fn poll_op(&mut self, now: Instant) -> Option<Op> {
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
        if let Some(op) = self.next_delete() {
            return Some(op);
        }
        if self.round.is_empty() {
            self.tick(now);
            if let Some(op) = self.next_delete() {
                return Some(op);
            }
            // One pass per retry period at most (a new publication starts
            // one at once): keys that failed wait for the next pass.
            if !self.pending.is_empty() && self.retry_at.is_none_or(|t| now >= t) {
                self.retry_at = Some(now + self.retry_every());
                self.round = self.pending.keys().cloned().collect();
            }
        }
        self.next_write(now)
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
    }

    fn show_phase(&mut self) {
        let phase = self.phase();
        if phase != self.phase {
            self.phase = phase;
            if let Some(p) = phase {
                self.effects.push_back(LeaderEffect::Phase(p));
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
                for (worker, record) in records {
                    self.pending.insert(worker, wire::encode(&record));
                }
                self.effects
                    .push_back(LeaderEffect::Parked(meta.parked.len()));
                self.pending
                    .insert(META_KEY.to_string(), wire::encode(&meta));
                self.version = version;
                self.unconfirmed = true;
                self.retry_at = None;
                self.published += 1;
            }
            Output::Clear(worker) => {
                self.pending.remove(&worker);
                self.deletes.push_back(worker);
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
            }
            Output::Died(workers) => log::warn!("[{id}] workers declared dead: {workers:?}"),
            Output::Report(e) => self.effects.push_back(LeaderEffect::Report(e)),
            Output::Resign => self.effects.push_back(LeaderEffect::Resign),
        }
    }

    /// The answer to the operation last returned by [`poll_op`](Self::poll_op).
    pub fn handle_reply(&mut self, now: Instant, reply: Reply) {
        self.now = now;
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        let id = &self.p.id;
        match flight {
            InFlight::Keys | InFlight::ReadKey(_) | InFlight::Restamp(_) => {
                self.office_reply(flight, reply)
            }
            InFlight::Delete(key) => {
                let ok = reply.error().is_none();
                if let Some(e) = reply.error() {
                    log::warn!("[{id}] clearing {key}: {e}");
                }
                self.fence.deleted(&key, ok);
            }
            InFlight::FenceRead(key) => {
                let Reply::Entry(Ok(found)) = reply else {
                    log::debug!("[{id}] reading {key} before writing it failed");
                    return;
                };
                let Some(value) = self.pending.get(&key) else {
                    return;
                };
                let found = found.as_ref().map(|e| (e.value.as_slice(), e.revision));
                match self.fence.read(&key, found, value) {
                    Verdict::Done => {
                        self.pending.remove(&key);
                    }
                    Verdict::Write => self.round.push_front(key),
                    Verdict::Deposed { epoch } => {
                        log::warn!(
                            "[{id}] {key} holds epoch {epoch}, newer than {}: writing no more",
                            self.epoch
                        );
                        self.deposed = Some(epoch);
                    }
                }
            }
            InFlight::Write(key) => {
                let result = match reply {
                    Reply::Written(r) => r,
                    _ => return,
                };
                self.fence.written(&key, result.as_ref().ok().copied());
                match result {
                    Ok(_) => {
                        self.pending.remove(&key);
                    }
                    Err(e) => log::debug!("[{id}] publishing {key}: {e}"),
                }
            }
        }
    }

    /// What the shell should do next.
    pub fn poll_effect(&mut self) -> Option<LeaderEffect> {
        self.effects.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) at the latest
    /// (`None`: nothing is due until an input comes).
    pub fn poll_timeout(&self) -> Option<Instant> {
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
            .and_then(|c| c.next_deadline())
            .map(|t| {
                if t <= now {
                    now + PAST_DEADLINE_DELAY
                } else {
                    t
                }
            });
        let writes = self.retry_at.filter(|_| lease && !self.pending.is_empty());
        [office, calc, writes, self.next_refresh, self.source_retry]
            .into_iter()
            .flatten()
            .min()
    }
}
