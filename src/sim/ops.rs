//! The link of a simulated process: the nodes' KV operations (the shared
//! [`Op`] vocabulary), with injected latency: an operation is either applied
//! when issued and answered late (a slow ack), or applied only when answered
//! (a slow request, the case that lets a deposed leader's write land late).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::fence::epoch_of;
use crate::core::ops::{Bucket, Op, Reply};
use crate::store::KvStore;

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
    /// The newest epoch that has taken office since the lease bucket last
    /// forgot.
    pub epoch: AtomicU64,
    /// How many times the lease bucket forgot: epochs (its revisions) are
    /// issued again from below each time, so a term whose lease was
    /// acquired before that counts in another numbering (see
    /// `sim::leader`).
    pub lease_forgot: AtomicU64,
    /// Assignment updates that landed carrying an older epoch than that.
    pub overwritten: AtomicU64,
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
    pub op: Op,
    pub due: Instant,
    pub reply: Option<Reply>,
}

/// A write of an assignment key (what a deposed leader may send late).
fn is_assignment_write(op: &Op) -> bool {
    matches!(
        op,
        Op::Create {
            bucket: Bucket::Assignments,
            ..
        } | Op::Update {
            bucket: Bucket::Assignments,
            ..
        }
    )
}

fn perform(stores: &Stores, op: &Op) -> Reply {
    let reply = op.perform(stores.of(op.bucket()));
    // A compare-and-set on a revision: what a newer leader's re-stamp of
    // every key must make fail. (Revision 0 is a create's first round,
    // which lands on an absent key — nothing a newer leader wrote; such
    // late creates are the documented limit counted by `stale_puts`.)
    if let (
        Op::Update {
            bucket: Bucket::Assignments,
            value,
            revision,
            ..
        },
        Reply::Written(Ok(_)),
    ) = (op, &reply)
    {
        let in_office = stores.office.epoch.load(Ordering::SeqCst);
        if *revision > 0 && epoch_of(value).is_some_and(|e| e < in_office) {
            stores.office.overwritten.fetch_add(1, Ordering::SeqCst);
        }
    }
    reply
}

/// What a request that outlived its client carries. A create is sent as
/// "write if the key's last sequence is 0", and the store client only
/// retries it against a delete marker's sequence once the first answer
/// comes back (`store::nats`); a request still on the wire after the client
/// gave up is that first round alone, which a delete marker fails (NATS
/// trap 2 meets the marker rule of NATS_NOTES).
fn as_first_sent(op: Op) -> Op {
    match op {
        Op::Create { bucket, key, value } => Op::Update {
            bucket,
            key,
            value,
            revision: 0,
        },
        op => op,
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
    wire: Vec<(Instant, Op)>,
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
        for (_, op) in due {
            let op = as_first_sent(op);
            self.count_stale(&op, now);
            drop(perform(&self.stores, &op));
        }
    }

    fn count_stale(&mut self, op: &Op, now: Instant) {
        let lease_valid = self.lease_valid_until.is_some_and(|t| now < t);
        if is_assignment_write(op) && !lease_valid {
            self.stale_puts += 1;
        }
    }

    /// Whether `thread` waits for an answer.
    pub fn blocked(&self, thread: Thread) -> bool {
        self.slots[thread as usize].is_some()
    }

    /// Issues an operation. Returns its answer at once when the link is
    /// fast; otherwise the thread is blocked until [`due`](Self::due).
    pub fn issue(&mut self, thread: Thread, op: Op, now: Instant) -> Option<Reply> {
        let latency = match self.slow {
            Some(max) => self.rng.duration(Duration::ZERO, max + self.lag),
            None => Duration::ZERO,
        };
        if latency.is_zero() {
            return Some(perform(&self.stores, &op));
        }
        if latency > self.timeout {
            let after = self.timeout;
            let reply = op.timed_out(after);
            self.wire.push((now + latency, op.clone()));
            self.slots[thread as usize] = Some(InFlight {
                op,
                due: now + after,
                reply: Some(reply),
            });
            return None;
        }
        let reply = self.rng.chance(0.5).then(|| perform(&self.stores, &op));
        self.slots[thread as usize] = Some(InFlight {
            op,
            due: now + latency,
            reply,
        });
        None
    }

    /// The answer of `thread`'s operation once it is due.
    pub fn due(&mut self, thread: Thread, now: Instant) -> Option<Reply> {
        let slot = &mut self.slots[thread as usize];
        if !matches!(slot, Some(f) if f.due <= now) {
            return None;
        }
        let f = slot.take()?;
        Some(match f.reply {
            Some(r) => r,
            None => {
                self.count_stale(&f.op, now);
                perform(&self.stores, &f.op)
            }
        })
    }
}
