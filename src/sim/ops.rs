//! KV operations of a simulated process, with injected latency: an operation
//! is either applied when issued and answered late (a slow ack), or applied
//! only when answered (a slow request, the case that lets a deposed leader's
//! write land late).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::fence::{epoch_of, Step};
use crate::core::ops::{Bucket, Op, Reply};
use crate::store::{Entry, KvError, KvStore, Revision};

use super::rng::Rng;

/// The three buckets of the group, as one process's client sees them.
#[derive(Clone)]
pub(crate) struct Stores {
    pub workers: Arc<dyn KvStore>,
    pub leader: Arc<dyn KvStore>,
    pub assignments: Arc<dyn KvStore>,
    /// Shared by every process of the world.
    pub office: Arc<Office>,
}

/// What the world knows of leader terms, to check the fence: once a leader
/// has taken office (re-stamped every key), no older leader's
/// compare-and-set may land.
#[derive(Default)]
pub(crate) struct Office {
    /// The newest epoch that has taken office.
    pub epoch: AtomicU64,
    /// Assignment updates that landed carrying an older epoch than that.
    pub overwritten: AtomicU64,
}

/// What an in-flight operation is for: the thread that issued it and how
/// its answer is fed back.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// An operation of a node, in the shared vocabulary.
    Op(Op),
    /// A fenced assignment write (`Step::Read` is never sent as a write).
    Write(String, Vec<u8>, Step),
    /// Reading an assignment key whose revision is unknown.
    Read(String),
    Delete(String, Option<Revision>),
}

/// An answer.
#[derive(Debug)]
pub(crate) enum Answer {
    /// To [`Kind::Op`].
    Op(Reply),
    Get(Result<Option<Entry>, KvError>),
    Write(Result<Revision, KvError>),
}

impl Answer {
    pub fn write(self) -> Result<Revision, KvError> {
        match self {
            Answer::Write(r) | Answer::Op(Reply::Written(r)) => r,
            Answer::Get(r) | Answer::Op(Reply::Entry(r)) => r.map(|e| e.map_or(0, |e| e.revision)),
            Answer::Op(Reply::Deleted(r)) => r.map(|()| 0),
            Answer::Op(Reply::Keys(r)) => r.map(|_| 0),
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

impl Stores {
    /// The store of `bucket`.
    pub fn of(&self, bucket: Bucket) -> &dyn KvStore {
        match bucket {
            Bucket::Workers => self.workers.as_ref(),
            Bucket::Leader => self.leader.as_ref(),
            Bucket::Assignments => self.assignments.as_ref(),
        }
    }
}

fn perform(stores: &Stores, kind: &Kind) -> Answer {
    match kind {
        Kind::Op(op) => Answer::Op(op.perform(stores.of(op.bucket()))),
        Kind::Write(key, value, step) => {
            let result = match step {
                Step::Update(rev) => stores.assignments.update(key, value, *rev),
                Step::Create | Step::Read => stores.assignments.create(key, value),
            };
            let in_office = stores.office.epoch.load(Ordering::SeqCst);
            if matches!(step, Step::Update(_))
                && result.is_ok()
                && epoch_of(value).is_some_and(|e| e < in_office)
            {
                stores.office.overwritten.fetch_add(1, Ordering::SeqCst);
            }
            Answer::Write(result)
        }
        Kind::Read(key) => Answer::Get(stores.assignments.get(key)),
        Kind::Delete(key, expected) => {
            Answer::Write(stores.assignments.delete(key, *expected).map(|()| 0))
        }
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
    /// How much longer than the client's timeout a slow request may stay on
    /// the wire (TCP retransmissions): the client gives up at `timeout`
    /// while the bytes still arrive later.
    pub lag: Duration,
    /// The client's operation timeout.
    pub timeout: Duration,
    /// Requests given up on by the client but still on their way: when they
    /// arrive, who sent them, what they do.
    wire: Vec<(Instant, Kind)>,
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
            lag: Duration::ZERO,
            timeout: Duration::MAX,
            wire: Vec::new(),
        }
    }

    /// Lets the requests still on the wire that are due now reach the store;
    /// nobody waits for their answers any more.
    pub fn deliver(&mut self, now: Instant) {
        if self.wire.is_empty() {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.wire)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.wire = later;
        for (_, kind) in due {
            self.count_stale(&kind, now);
            drop(perform(&self.stores, &kind));
        }
    }

    fn count_stale(&mut self, kind: &Kind, now: Instant) {
        let lease_valid = self.lease_valid_until.is_some_and(|t| now < t);
        if matches!(kind, Kind::Write(..)) && !lease_valid {
            self.stale_puts += 1;
        }
    }

    /// Whether `thread` waits for an answer.
    pub fn blocked(&self, thread: Thread) -> bool {
        self.slots[thread as usize].is_some()
    }

    /// Issues an operation. Returns its answer at once when the link is
    /// fast; otherwise the thread is blocked until [`due`](Self::due).
    pub fn issue(&mut self, thread: Thread, kind: Kind, now: Instant) -> Option<(Kind, Answer)> {
        let latency = match self.slow {
            Some(max) => self.rng.duration(Duration::ZERO, max + self.lag),
            None => Duration::ZERO,
        };
        if latency.is_zero() {
            let answer = perform(&self.stores, &kind);
            return Some((kind, answer));
        }
        if latency > self.timeout {
            let after = self.timeout;
            let timeout = KvError::Timeout {
                op: "simulated",
                after,
            };
            let answer = match &kind {
                Kind::Op(op) => Answer::Op(op.timed_out(after)),
                Kind::Read(_) => Answer::Get(Err(timeout)),
                _ => Answer::Write(Err(timeout)),
            };
            self.wire.push((now + latency, kind.clone()));
            self.slots[thread as usize] = Some(InFlight {
                kind,
                sent: now,
                due: now + after,
                answer: Some(answer),
            });
            return None;
        }
        let answer = self.rng.chance(0.5).then(|| perform(&self.stores, &kind));
        self.slots[thread as usize] = Some(InFlight {
            kind,
            sent: now,
            due: now + latency,
            answer,
        });
        None
    }

    /// The answer of `thread`'s operation once it is due, with its send time.
    pub fn due(&mut self, thread: Thread, now: Instant) -> Option<(Kind, Answer, Instant)> {
        let slot = &mut self.slots[thread as usize];
        if !matches!(slot, Some(f) if f.due <= now) {
            return None;
        }
        let f = slot.take()?;
        let answer = match f.answer {
            Some(a) => a,
            None => {
                self.count_stale(&f.kind, now);
                perform(&self.stores, &f.kind)
            }
        };
        Some((f.kind, answer, f.sent))
    }
}
