//! Claiming a stable worker ID, as a sans-IO node: `<prefix>-<n>`, the
//! preferred one when it is free or its holder has gone quiet, otherwise the
//! lowest free n — one that no published assignment names first, so that a
//! running worker whose key the store lost keeps its ID.
//!
//! A preferred ID held by another process is taken over only once its
//! heartbeat has been seen standing still for a whole heartbeat TTL (its
//! holder has fenced itself by then), by a compare-and-set on the revision
//! that stood still. The runtime drives it while starting a manager; the
//! simulator drives the very same node for every simulated process.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::core::node::Node;
use crate::core::ops::{Bucket, Op, Reply};
use crate::names::{worker_id, worker_number};
use crate::store::{Entry, Revision};
use crate::wire::{self, WorkerRecord};
use crate::{Config, Error};

/// What the claim ended with.
#[derive(Debug)]
pub(crate) enum ClaimEffect {
    /// The ID is this worker's, written at `revision`.
    Claimed {
        /// The worker ID.
        id: String,
        /// The revision of the write that claimed it.
        revision: Revision,
        /// The instance that held it before, when it was taken over.
        took_over_from: Option<String>,
    },
    /// The claim failed (a KV error, or the group is full); nothing is held.
    Failed(Error),
}

#[derive(Clone, Debug)]
enum Step {
    /// Create the preferred ID.
    CreatePreferred,
    /// It exists: read who holds it.
    ReadPreferred,
    /// It vanished between the create and the read: create it again.
    RecreatePreferred,
    /// Its holder's heartbeat at `entry` must stand still until `stale_at`;
    /// look again at `next_poll`.
    Watching {
        entry: Entry,
        stale_at: Instant,
        next_poll: Instant,
    },
    /// It stood still for a TTL: take it over.
    TakeOver { entry: Entry },
    /// List the taken IDs.
    ListKeys,
    /// List the IDs with a published assignment, to try the free IDs
    /// without one first.
    ListAssigned(VecDeque<String>),
    /// Create the free IDs in turn, lowest first.
    CreateFree(VecDeque<String>),
    /// Over: the effect is out.
    Done,
}

/// The ID claim of one starting worker.
#[derive(Debug)]
pub(crate) struct ClaimNode {
    preferred: Option<String>,
    value: Vec<u8>,
    prefix: String,
    max_workers: u32,
    ttl: Duration,
    poll: Duration,
    /// A preferred ID whose takeover would end after this is given up.
    deadline: Option<Instant>,
    step: Step,
    in_flight: bool,
    effect: Option<ClaimEffect>,
    /// A failed operation is tried again then (while the deadline allows).
    retry_at: Option<Instant>,
    backoff: Duration,
    /// A write of this key timed out: it may have landed, so the key is read
    /// before the step goes on (`verifying`: that read is in flight).
    unsure: Option<String>,
    verifying: bool,
}

/// The longest pause between two attempts of a failed claim step.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl ClaimNode {
    /// A claim of `preferred` (or the lowest free ID) with `record` as the
    /// first heartbeat.
    pub(crate) fn new(
        config: &Config,
        preferred: Option<&str>,
        record: &WorkerRecord,
        deadline: Option<Instant>,
    ) -> Self {
        ClaimNode {
            preferred: preferred.map(str::to_string),
            value: wire::encode(record),
            prefix: config.worker_id_prefix.clone(),
            max_workers: config.max_workers,
            ttl: config.heartbeat_ttl,
            poll: (config.heartbeat_interval / 2).max(Duration::from_millis(5)),
            deadline,
            step: if preferred.is_some() {
                Step::CreatePreferred
            } else {
                Step::ListKeys
            },
            in_flight: false,
            effect: None,
            retry_at: None,
            backoff: (config.heartbeat_interval / 2).max(Duration::from_millis(5)),
            unsure: None,
            verifying: false,
        }
    }

    /// The key the current step writes, if it writes one.
    fn written_key(&self) -> Option<String> {
        match &self.step {
            Step::CreatePreferred | Step::RecreatePreferred | Step::TakeOver { .. } => {
                Some(self.preferred_key())
            }
            Step::CreateFree(free) => free.front().cloned(),
            _ => None,
        }
    }

    fn preferred_key(&self) -> String {
        self.preferred.clone().unwrap_or_default()
    }

    fn claimed(&mut self, id: String, revision: Revision, took_over_from: Option<String>) {
        self.step = Step::Done;
        self.effect = Some(ClaimEffect::Claimed {
            id,
            revision,
            took_over_from,
        });
    }

    /// An operation failed: the step is tried again after a pause while the
    /// start-up deadline allows, else the claim fails with `e`.
    fn failed(&mut self, now: Instant, e: crate::store::KvError) {
        let at = now + self.backoff;
        if self.deadline.is_none_or(|d| at >= d) {
            return self.fail(e.into());
        }
        log::debug!("id claim: {e}; trying again in {:?}", self.backoff);
        if self.unsure.is_none() && matches!(e, crate::store::KvError::Timeout { .. }) {
            self.unsure = self.written_key();
        }
        self.retry_at = Some(at);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn fail(&mut self, e: Error) {
        self.step = Step::Done;
        self.effect = Some(ClaimEffect::Failed(e));
    }

    fn no_free_id(&mut self) {
        self.fail(Error::NoFreeWorkerId {
            max_workers: self.max_workers,
        });
    }
}

impl Node for ClaimNode {
    type Input = std::convert::Infallible;
    type Effect = ClaimEffect;

    /// Nothing but KV answers and time move a claim.
    fn handle_input(&mut self, _now: Instant, input: std::convert::Infallible) {
        match input {}
    }

    /// The operation due then is handed out by `poll_op`.
    fn handle_timeout(&mut self, _now: Instant) {}
    fn handle_reply(&mut self, now: Instant, reply: Reply) {
        self.in_flight = false;
        if let Some(e) = reply.error().filter(|e| !e.is_conflict()) {
            let e = e.clone();
            return self.failed(now, e);
        }
        self.backoff = self.poll;
        if std::mem::take(&mut self.verifying) {
            let key = self.unsure.take().unwrap_or_default();
            if let Reply::Entry(Ok(Some(entry))) = &reply {
                if entry.value == self.value {
                    // The write that timed out had landed.
                    return self.claimed(key, entry.revision, None);
                }
            }
            // It had not (or someone else's value is there): the step goes on.
            return;
        }
        let id = self.preferred_key();
        match (std::mem::replace(&mut self.step, Step::Done), reply) {
            (Step::CreatePreferred, Reply::Written(Ok(rev))) => self.claimed(id, rev, None),
            (Step::CreatePreferred, _) => self.step = Step::ReadPreferred,
            (Step::ReadPreferred, Reply::Entry(Ok(None))) => self.step = Step::RecreatePreferred,
            (Step::ReadPreferred, Reply::Entry(Ok(Some(entry)))) => {
                let stale_at = now + self.ttl;
                self.step = if self.deadline.is_some_and(|d| stale_at >= d) {
                    log::info!("preferred worker id {id} is held; its takeover would outlast the start-up deadline");
                    Step::ListKeys
                } else {
                    Step::Watching {
                        entry,
                        stale_at,
                        next_poll: (now + self.poll).min(stale_at),
                    }
                };
            }
            (Step::RecreatePreferred, Reply::Written(Ok(rev))) => self.claimed(id, rev, None),
            (
                Step::Watching {
                    entry, stale_at, ..
                },
                Reply::Entry(Ok(Some(seen))),
            ) if seen.revision == entry.revision => {
                self.step = if now >= stale_at {
                    Step::TakeOver { entry }
                } else {
                    Step::Watching {
                        entry,
                        stale_at,
                        next_poll: (now + self.poll).min(stale_at),
                    }
                };
            }
            (Step::TakeOver { entry }, Reply::Written(Ok(rev))) => {
                let old = wire::decode::<WorkerRecord>("workers", &id, &entry.value).ok();
                self.claimed(id, rev, old.map(|r| r.instance));
            }
            // The preferred ID is held by a live worker (its heartbeat moved),
            // or was won by another claimant: take the lowest free one.
            (Step::RecreatePreferred | Step::Watching { .. } | Step::TakeOver { .. }, _) => {
                log::info!("preferred worker id {id} is held by a live worker; taking another");
                self.step = Step::ListKeys;
            }
            (Step::ListKeys, Reply::Keys(Ok(keys))) => {
                let taken: std::collections::BTreeSet<u32> = keys
                    .iter()
                    .filter_map(|k| worker_number(&self.prefix, k))
                    .collect();
                let free: VecDeque<String> = (0..self.max_workers)
                    .filter(|n| !taken.contains(n))
                    .map(|n| worker_id(&self.prefix, n))
                    .collect();
                if free.is_empty() {
                    return self.no_free_id();
                }
                self.step = Step::ListAssigned(free);
            }
            (Step::ListAssigned(free), Reply::Keys(Ok(assigned))) => {
                self.step = Step::CreateFree(unassigned_first(free, &assigned));
            }
            (Step::CreateFree(mut free), Reply::Written(result)) => match result {
                Ok(rev) => {
                    let id = free.pop_front().unwrap_or_default();
                    self.claimed(id, rev, None);
                }
                Err(_) => {
                    free.pop_front();
                    if free.is_empty() {
                        return self.no_free_id();
                    }
                    self.step = Step::CreateFree(free);
                }
            },
            (step, reply) => {
                self.fail(Error::Kv(crate::store::KvError::Other(format!(
                    "id claim: unexpected reply {reply:?} in step {step:?}"
                ))));
            }
        }
    }

    fn poll_op(&mut self, now: Instant) -> Option<Op> {
        if self.in_flight || self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        self.retry_at = None;
        let bucket = Bucket::Workers;
        if let Some(key) = self.unsure.clone() {
            self.in_flight = true;
            self.verifying = true;
            return Some(Op::Get { bucket, key });
        }
        let op = match &self.step {
            Step::CreatePreferred | Step::RecreatePreferred => Op::Create {
                bucket,
                key: self.preferred_key(),
                value: self.value.clone(),
            },
            Step::ReadPreferred => Op::Get {
                bucket,
                key: self.preferred_key(),
            },
            Step::Watching { next_poll, .. } if now < *next_poll => return None,
            Step::Watching { .. } => Op::Get {
                bucket,
                key: self.preferred_key(),
            },
            Step::TakeOver { entry } => Op::Update {
                bucket,
                key: self.preferred_key(),
                value: self.value.clone(),
                revision: entry.revision,
            },
            Step::ListKeys => Op::Keys { bucket },
            Step::ListAssigned(_) => Op::Keys {
                bucket: Bucket::Assignments,
            },
            Step::CreateFree(free) => Op::Create {
                bucket,
                key: free.front()?.clone(),
                value: self.value.clone(),
            },
            Step::Done => return None,
        };
        self.in_flight = true;
        Some(op)
    }

    fn poll_effect(&mut self) -> Option<ClaimEffect> {
        self.effect.take()
    }

    /// When the node next has something to do without a reply.
    fn poll_timeout(&self) -> Option<Instant> {
        if let Some(at) = self.retry_at.filter(|_| !self.in_flight) {
            return Some(at);
        }
        match &self.step {
            Step::Watching { next_poll, .. } if !self.in_flight => Some(*next_poll),
            _ => None,
        }
    }
}

/// The free IDs, those without a published assignment first (each part in
/// its order). An ID free in the workers bucket but with an assignment is
/// one whose worker died or left and whose record the leader has not
/// cleared yet — or a running worker whose key the store lost (a workers
/// bucket deleted and recreated) and that has not written it again: taking
/// that one would make the running worker lose its ID and stop.
fn unassigned_first(free: VecDeque<String>, assigned: &[String]) -> VecDeque<String> {
    let assigned: std::collections::BTreeSet<&str> = assigned.iter().map(String::as_str).collect();
    let (with, without): (VecDeque<String>, VecDeque<String>) = free
        .into_iter()
        .partition(|id| assigned.contains(id.as_str()));
    without.into_iter().chain(with).collect()
}

#[cfg(test)]
#[path = "claim_tests.rs"]
mod tests;
