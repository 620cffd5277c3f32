//! KV operations of a simulated process, with injected latency: an operation
//! is either applied when issued and answered late (a slow ack), or applied
//! only when answered (a slow request, the case that lets a deposed leader's
//! write land late).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::lease::LeaseAction;
use crate::core::worker::BeatAction;
use crate::names::LEADER_KEY;
use crate::store::{Entry, KvError, KvStore, Revision};
use crate::wire;

use super::rng::Rng;

/// The three buckets of the group, as one process's client sees them.
#[derive(Clone)]
pub(crate) struct Stores {
    pub workers: Arc<dyn KvStore>,
    pub leader: Arc<dyn KvStore>,
    pub assignments: Arc<dyn KvStore>,
}

/// What an in-flight operation is for: the thread that issued it and how
/// its answer is fed back.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Beat(BeatAction),
    Lease(LeaseAction),
    Put(String, Vec<u8>),
    Delete(String),
}

/// An answer.
#[derive(Debug)]
pub(crate) enum Answer {
    Get(Result<Option<Entry>, KvError>),
    Write(Result<Revision, KvError>),
}

impl Answer {
    pub fn write(self) -> Result<Revision, KvError> {
        match self {
            Answer::Write(r) => r,
            Answer::Get(r) => r.map(|e| e.map_or(0, |e| e.revision)),
        }
    }
}

/// The three threads of a process that talk to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Thread {
    Beat = 0,
    Lease = 1,
    Leader = 2,
}

/// An operation whose answer is not in yet.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub kind: Kind,
    pub sent: Instant,
    pub due: Instant,
    pub answer: Option<Answer>,
}

fn perform(stores: &Stores, id: &str, kind: &Kind) -> Answer {
    match kind {
        Kind::Beat(BeatAction::Update { record, revision }) => {
            Answer::Write(stores.workers.update(id, &wire::encode(record), *revision))
        }
        Kind::Beat(BeatAction::Create(record)) => {
            Answer::Write(stores.workers.create(id, &wire::encode(record)))
        }
        Kind::Beat(BeatAction::ReadOwnKey) => Answer::Get(stores.workers.get(id)),
        Kind::Lease(LeaseAction::Read) => Answer::Get(stores.leader.get(LEADER_KEY)),
        Kind::Lease(LeaseAction::Create(rec)) => {
            Answer::Write(stores.leader.create(LEADER_KEY, &wire::encode(rec)))
        }
        Kind::Lease(
            LeaseAction::Takeover { revision, record } | LeaseAction::Renew { revision, record },
        ) => Answer::Write(
            stores
                .leader
                .update(LEADER_KEY, &wire::encode(record), *revision),
        ),
        Kind::Put(key, value) => Answer::Write(stores.assignments.put(key, value)),
        Kind::Delete(key) => Answer::Write(stores.assignments.delete(key, None).map(|()| 0)),
    }
}

/// Per-thread in-flight slots and the latency model of one process.
pub(crate) struct Io {
    pub stores: Stores,
    slots: [Option<InFlight>; 3],
    /// Largest injected latency while the process's link is slow.
    pub slow: Option<Duration>,
    rng: Rng,
    /// Until when this process's lease may be acted on, as of its last step.
    pub lease_valid_until: Option<Instant>,
    /// Assignment puts that reached the store after the lease they were sent
    /// under could no longer be trusted.
    pub stale_puts: u64,
}

impl Io {
    pub fn new(stores: Stores, rng: Rng) -> Self {
        Io {
            stores,
            slots: [None, None, None],
            slow: None,
            rng,
            lease_valid_until: None,
            stale_puts: 0,
        }
    }

    /// Whether `thread` waits for an answer.
    pub fn blocked(&self, thread: Thread) -> bool {
        self.slots[thread as usize].is_some()
    }

    /// Issues an operation. Returns its answer at once when the link is
    /// fast; otherwise the thread is blocked until [`due`](Self::due).
    pub fn issue(
        &mut self,
        id: &str,
        thread: Thread,
        kind: Kind,
        now: Instant,
    ) -> Option<(Kind, Answer)> {
        let latency = match self.slow {
            Some(max) => self.rng.duration(Duration::ZERO, max),
            None => Duration::ZERO,
        };
        if latency.is_zero() {
            let answer = perform(&self.stores, id, &kind);
            return Some((kind, answer));
        }
        let answer = self
            .rng
            .chance(0.5)
            .then(|| perform(&self.stores, id, &kind));
        self.slots[thread as usize] = Some(InFlight {
            kind,
            sent: now,
            due: now + latency,
            answer,
        });
        None
    }

    /// The answer of `thread`'s operation once it is due, with its send time.
    pub fn due(
        &mut self,
        id: &str,
        thread: Thread,
        now: Instant,
    ) -> Option<(Kind, Answer, Instant)> {
        let slot = &mut self.slots[thread as usize];
        if !matches!(slot, Some(f) if f.due <= now) {
            return None;
        }
        let f = slot.take()?;
        let answer = match f.answer {
            Some(a) => a,
            None => {
                let lease_valid = self.lease_valid_until.is_some_and(|t| now < t);
                if matches!(f.kind, Kind::Put(..)) && !lease_valid {
                    self.stale_puts += 1;
                }
                perform(&self.stores, id, &f.kind)
            }
        };
        Some((f.kind, answer, f.sent))
    }
}
