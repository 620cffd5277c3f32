//! The election as a sans-IO node: the lease state machine
//! ([`LeaseCore`]) with everything around it that used to live in the
//! election thread — decoding (and distrusting) the lease key, turning lease
//! actions into KV operations and their answers into outcomes, resigning
//! after the leader's plug-in code panicked, releasing the lease on stop.
//!
//! It follows the node contract ([`Node`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::core::lease::{LeaseAction, LeaseCore, LeaseEvent, WriteOutcome};
use crate::core::node::Node;
use crate::core::ops::{Bucket, Op, Reply};
use crate::names::LEADER_KEY;
use crate::store::WatchEvent;
use crate::wire;
use crate::Error;

/// What the election tells its shell.
#[derive(Debug)]
pub(crate) enum ElectionEffect {
    /// The first lease event: the worker knows where the lease stands.
    Settled,
    /// This worker leads with this epoch: start a leader term.
    Acquired {
        /// The epoch.
        epoch: u64,
    },
    /// This worker no longer leads (lost, stepped down, resigned or
    /// released): end the leader term.
    Lost,
    /// The lease is held with this epoch (by anyone).
    Epoch(u64),
    /// Until when the held lease may be acted on (`None`: not leader).
    Valid(Option<Instant>),
    /// Worth an `on_error` report.
    Report(Error),
    /// The store forgot the lease bucket: the epochs seen before no longer
    /// count (for the heartbeat node,
    /// [`HeartbeatInput::LeaseReset`](crate::core::heartbeat::HeartbeatInput::LeaseReset)).
    EpochReset,
}

/// What the shell tells the election node.
#[derive(Debug)]
pub(crate) enum ElectionInput {
    /// The leader's plug-in code panicked: give the lease up at once (the
    /// key is deleted, so another worker takes over without waiting for a
    /// TTL) and stay out of the election for a while.
    Resign,
    /// The worker stops: release the lease so another worker takes over at
    /// once instead of waiting for it to expire.
    Release,
}

#[derive(Debug)]
enum InFlight {
    Lease {
        action: LeaseAction,
        sent: Instant,
    },
    /// Deleting the lease this worker gave up.
    Release,
}

/// How long a worker whose plug-in code panicked `n` terms in a row stays
/// out of the election: two lease TTLs, doubling, at most 64.
fn sit_out(ttl: Duration, n: u32) -> Duration {
    ttl * 2u32.pow(n.min(5) + 1)
}

/// The election of one worker.
#[derive(Debug)]
pub(crate) struct ElectionNode {
    core: LeaseCore,
    ttl: Duration,
    /// The lease bucket's name, for reports.
    bucket: String,
    now: Instant,
    in_flight: Option<InFlight>,
    release: Option<Op>,
    effects: VecDeque<ElectionEffect>,
    settled: bool,
    valid: Option<Instant>,
    /// Terms in a row that ended because the leader's plug-in code panicked.
    resignations: u32,
    /// The highest lease epoch told since the store last forgot the lease.
    top_epoch: u64,
    /// [`ElectionInput::Release`]: the worker stops; it must not campaign
    /// again (its shell's last step would take the lease straight back and
    /// leave it held by a stopped process until it expires).
    released: bool,
    /// The watch's replay of the key is under way (until `Synced`), and
    /// what it showed so far.
    replay: Option<Replay>,
}

/// What the replay of a watch (its events until `Synced`: the key as it
/// stands when the watch opened) showed.
#[derive(Debug, Default)]
struct Replay {
    /// An event of the key came.
    shown: bool,
    /// It came below a revision already seen.
    behind: bool,
}

impl ElectionNode {
    /// A follower that has not looked at the lease (in `bucket`) yet.
    pub fn new(worker: &str, instance: &str, ttl: Duration, bucket: &str, now: Instant) -> Self {
        ElectionNode {
            core: LeaseCore::new(worker, instance, ttl),
            ttl,
            bucket: bucket.to_string(),
            now,
            in_flight: None,
            release: None,
            effects: VecDeque::new(),
            settled: false,
            valid: None,
            resignations: 0,
            top_epoch: 0,
            released: false,
            replay: Some(Replay::default()),
        }
    }

    /// Until when the held lease may be acted on.
    pub(crate) fn valid_until(&self) -> Option<Instant> {
        self.core.valid_until()
    }

    /// The lease's epoch never goes down while the store remembers: each
    /// holder's is above the last. A lower one (in revision order: stale
    /// reads are weeded out by revision) means the store forgot, e.g. a
    /// revision issued again let a holder renew over another's record.
    /// The workers are told, or they would ignore that holder's records
    /// for good, as older than the epoch they remember.
    fn check_epoch(&mut self, epoch: u64) {
        if epoch < self.top_epoch {
            log::warn!(
                "[{}] lease epoch {epoch} after {}: the store went back; epochs start again",
                self.core.worker(),
                self.top_epoch
            );
            self.epoch_reset();
        }
        self.top_epoch = epoch;
    }

    /// The store forgot the lease (its watch said so, or a revision came
    /// below one seen): the lease core starts its revisions again and the
    /// epochs seen before no longer count.
    fn store_forgot(&mut self, now: Instant) {
        let events = self.core.store_reset(now);
        self.absorb(events);
        self.epoch_reset();
    }

    /// The epochs seen before no longer count (the store forgot them).
    fn epoch_reset(&mut self) {
        self.top_epoch = 0;
        self.effects.push_back(ElectionEffect::EpochReset);
    }

    fn absorb(&mut self, events: Vec<LeaseEvent>) {
        for ev in events {
            if !self.settled {
                self.settled = true;
                self.effects.push_back(ElectionEffect::Settled);
            }
            if let LeaseEvent::Acquired { epoch } | LeaseEvent::Epoch(epoch) = ev {
                self.check_epoch(epoch);
            }
            self.effects.push_back(match ev {
                LeaseEvent::Acquired { epoch } => ElectionEffect::Acquired { epoch },
                LeaseEvent::Lost => {
                    // A term that ended without a panic.
                    self.resignations = 0;
                    ElectionEffect::Lost
                }
                LeaseEvent::Epoch(e) => ElectionEffect::Epoch(e),
            });
        }
        let valid = self.core.valid_until();
        if valid != self.valid {
            self.valid = valid;
            self.effects.push_back(ElectionEffect::Valid(valid));
        }
    }

    /// The lease as found in `entry`; one that cannot be trusted is
    /// reported and counts as held by nobody known (taken over after a TTL).
    fn observe_entry(&mut self, now: Instant, entry: &crate::store::Entry) {
        let (record, err) =
            wire::lease_or_nobody(&self.bucket, &entry.key, &entry.value, entry.revision);
        if let Some(e) = err {
            self.effects.push_back(ElectionEffect::Report(e));
        }
        let events = self.core.observe(now, entry.revision, Some(record));
        self.absorb(events);
    }

    /// An event of the watch at `revision`, noted while it replays.
    fn replayed(&mut self, revision: crate::store::Revision) {
        if let Some(r) = &mut self.replay {
            r.shown = true;
            r.behind |= self.core.went_back(revision);
        }
    }

    /// [`ElectionInput::Resign`].
    fn resign(&mut self, now: Instant) {
        self.now = now;
        let until = now + sit_out(self.ttl, self.resignations);
        self.resignations += 1;
        log::warn!(
            "resigning the lease after a panic in plug-in code; out of the election for {:?}",
            until - now
        );
        let held = self.core.resign_until(until);
        self.give_up(held);
    }

    /// [`ElectionInput::Release`].
    fn release(&mut self, now: Instant) {
        self.now = now;
        self.released = true;
        let held = self.core.held_revision();
        self.core.resign();
        self.give_up(held);
    }

    fn give_up(&mut self, held: Option<crate::store::Revision>) {
        if let Some(revision) = held {
            self.release = Some(Op::Delete {
                bucket: Bucket::Leader,
                key: LEADER_KEY.to_string(),
                expected: Some(revision),
            });
            self.effects.push_back(ElectionEffect::Lost);
        }
        self.absorb(Vec::new());
    }
}

impl Node for ElectionNode {
    type Input = ElectionInput;
    type Effect = ElectionEffect;

    fn handle_input(&mut self, now: Instant, input: ElectionInput) {
        match input {
            ElectionInput::Resign => self.resign(now),
            ElectionInput::Release => self.release(now),
        }
    }
    fn handle_watch(&mut self, now: Instant, ev: WatchEvent) {
        self.now = now;
        match ev {
            WatchEvent::Put(entry) => {
                self.replayed(entry.revision);
                self.observe_entry(now, &entry)
            }
            WatchEvent::Delete { revision, .. } => {
                self.replayed(revision);
                let events = self.core.observe(now, revision, None);
                self.absorb(events);
            }
            WatchEvent::Synced => {
                // A replay behind what was seen, or without the key: the
                // store may have forgotten between two watches.
                if self.replay.take().is_some_and(|r| r.behind || !r.shown) {
                    self.core.recheck();
                }
            }
        }
    }

    /// A watch of the lease key that ended: the driver opens another,
    /// whose replay is checked (see [`Replay`]: the store may forget while
    /// no watch is open). Ended because the store forgot the bucket:
    /// revisions start again, so older ones than seen before are news, not
    /// stale, and the epochs seen before no longer count.
    fn handle_watch_end(&mut self, now: Instant, store_forgot: bool) {
        self.now = now;
        self.replay = Some(Replay::default());
        if store_forgot {
            self.store_forgot(now);
        }
    }

    fn handle_reply(&mut self, now: Instant, reply: Reply) {
        self.now = now;
        let Some(InFlight::Lease { action, sent }) = self.in_flight.take() else {
            return;
        };
        let events = match (&action, reply) {
            (LeaseAction::Read, Reply::Entry(Ok(found))) => {
                let mut evs = self
                    .core
                    .on_result(now, sent, &action, WriteOutcome::Unknown);
                self.absorb(std::mem::take(&mut evs));
                match found {
                    Some(entry) => {
                        // A read answers with the key as it is now: below a
                        // revision already seen, the store went back (a
                        // watch may lag, a read cannot). Left ignored as
                        // stale, the lease would stay unknown and be read
                        // again at once, for ever.
                        if self.core.went_back(entry.revision) {
                            self.store_forgot(now);
                        }
                        self.observe_entry(now, &entry)
                    }
                    None => {
                        let evs = self.core.observe(now, 0, None);
                        self.absorb(evs);
                    }
                }
                Vec::new()
            }
            (LeaseAction::Read, _) => {
                self.core.read_failed(now);
                Vec::new()
            }
            (_, reply) => {
                let outcome = match reply {
                    Reply::Written(Ok(rev)) => WriteOutcome::Written(rev),
                    Reply::Written(Err(e)) if e.is_conflict() => WriteOutcome::Conflict,
                    _ => WriteOutcome::Unknown,
                };
                // A write of ours stored below a revision already seen:
                // the store went back (the heartbeat's own check, for the
                // lease). Seen while no watch was open, it is the only
                // sign: the epochs seen before must not count (kept, a
                // worker ignored the records of the new leader — its
                // epoch led on above the records', below the lease's
                // forgotten ones — for good).
                if let WriteOutcome::Written(rev) = outcome {
                    if self.core.went_back(rev) {
                        self.store_forgot(now);
                    }
                }
                self.core.on_result(now, sent, &action, outcome)
            }
        };
        self.absorb(events);
    }

    /// Time passed: steps down when the lease can no longer be trusted.
    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let events = self.core.tick(now);
        self.absorb(events);
    }

    fn poll_op(&mut self, now: Instant) -> Option<Op> {
        self.now = now;
        if self.in_flight.is_some() {
            return None;
        }
        if let Some(op) = self.release.take() {
            self.in_flight = Some(InFlight::Release);
            return Some(op);
        }
        if self.released {
            return None;
        }
        let events = self.core.tick(now);
        self.absorb(events);
        let action = self.core.poll(now)?;
        let bucket = Bucket::Leader;
        let key = LEADER_KEY.to_string();
        let op = match &action {
            LeaseAction::Read => Op::Get { bucket, key },
            LeaseAction::Create(record) => Op::Create {
                bucket,
                key,
                value: wire::encode(record),
            },
            LeaseAction::Takeover { revision, record }
            | LeaseAction::Renew { revision, record } => Op::Update {
                bucket,
                key,
                value: wire::encode(record),
                revision: *revision,
            },
        };
        self.in_flight = Some(InFlight::Lease { action, sent: now });
        Some(op)
    }

    fn poll_effect(&mut self) -> Option<ElectionEffect> {
        self.effects.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.core.next_deadline(self.now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Entry;

    /// A node that created the free lease at revision 4, its effects taken.
    fn elected(ttl: Duration, t0: Instant) -> ElectionNode {
        let mut n = ElectionNode::new("w", "me", ttl, "leader", t0);
        n.poll_op(t0);
        n.handle_reply(t0, Reply::Entry(Ok(None)));
        n.poll_op(t0);
        n.handle_reply(t0, Reply::Written(Ok(4)));
        drain(&mut n);
        n
    }

    /// `op` deletes the lease held at revision 4.
    fn assert_deletes_lease(op: Option<Op>) {
        assert!(
            matches!(
                op,
                Some(Op::Delete {
                    expected: Some(4),
                    ..
                })
            ),
            "{op:?}"
        );
    }

    fn drain(n: &mut ElectionNode) -> Vec<ElectionEffect> {
        std::iter::from_fn(|| n.poll_effect()).collect()
    }

    #[test]
    fn a_free_lease_is_created_and_its_revision_is_the_epoch() {
        let t0 = Instant::now();
        let mut n = ElectionNode::new("w", "me", Duration::from_secs(3), "leader", t0);
        assert!(matches!(n.poll_op(t0), Some(Op::Get { .. })));
        n.handle_reply(t0, Reply::Entry(Ok(None)));
        assert!(matches!(n.poll_op(t0), Some(Op::Create { .. })));
        n.handle_reply(t0, Reply::Written(Ok(7)));
        let effects = drain(&mut n);
        assert!(matches!(effects[0], ElectionEffect::Settled), "{effects:?}");
        assert!(effects
            .iter()
            .any(|e| matches!(e, ElectionEffect::Acquired { epoch: 7 })));
        assert!(effects
            .iter()
            .any(|e| matches!(e, ElectionEffect::Valid(Some(_)))));
    }

    #[test]
    fn a_forged_lease_is_reported_and_its_epoch_not_trusted() {
        let t0 = Instant::now();
        let mut n = ElectionNode::new("w", "me", Duration::from_secs(3), "leader", t0);
        let entry = Entry {
            key: LEADER_KEY.into(),
            value: br#"{"worker":"x","instance":"y","epoch":999999}"#.to_vec(),
            revision: 12,
        };
        n.handle_watch(t0, WatchEvent::Put(entry));
        let effects = drain(&mut n);
        assert!(effects
            .iter()
            .any(|e| matches!(e, ElectionEffect::Report(Error::Corrupt { .. }))));
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, ElectionEffect::Epoch(12))),
            "{effects:?}"
        );
    }

    #[test]
    fn a_read_below_a_revision_seen_means_the_store_went_back_and_is_not_read_again_at_once() {
        let t0 = Instant::now();
        let mut n = ElectionNode::new("w", "me", Duration::from_secs(3), "leader", t0);
        let lease = |revision| Entry {
            key: LEADER_KEY.into(),
            value: br#"{"worker":"x","instance":"y","epoch":0}"#.to_vec(),
            revision,
        };
        // Someone else's lease, seen at revision 40 ...
        n.handle_watch(t0, WatchEvent::Put(lease(40)));
        drain(&mut n);
        // ... then the bucket went back without the watch noticing yet: a
        // read finds the key at revision 1.
        let t1 = t0 + Duration::from_secs(4);
        n.handle_timeout(t1);
        let mut reads = 0;
        while let Some(op) = n.poll_op(t1) {
            assert!(reads < 3, "reading the lease in a loop: {op:?}");
            match op {
                Op::Get { .. } => {
                    reads += 1;
                    n.handle_reply(t1, Reply::Entry(Ok(Some(lease(1)))));
                }
                // The takeover at revision 40 fails: the key is at 1 now.
                Op::Update { key, .. } if reads == 0 => {
                    let e = crate::store::KvError::RevisionMismatch { key, expected: 40 };
                    n.handle_reply(t1, Reply::Written(Err(e)));
                }
                _ => break,
            }
        }
        assert!(reads > 0, "the lease was never read");
        super::store_tests::assert_epoch_reset(&mut n);
    }

    #[test]
    fn resigning_deletes_the_lease_and_sits_out_longer_each_time() {
        let ttl = Duration::from_secs(3);
        let t0 = Instant::now();
        let mut n = elected(ttl, t0);
        n.resign(t0);
        assert!(drain(&mut n)
            .iter()
            .any(|e| matches!(e, ElectionEffect::Lost)));
        assert_deletes_lease(n.poll_op(t0));
        n.handle_reply(t0, Reply::Deleted(Ok(())));
        assert_eq!(sit_out(ttl, 0), ttl * 2);
        assert_eq!(sit_out(ttl, 1), ttl * 4);
        assert_eq!(sit_out(ttl, 9), ttl * 64);
    }

    #[test]
    fn a_released_lease_is_not_taken_back() {
        let ttl = Duration::from_secs(3);
        let t0 = Instant::now();
        let mut n = elected(ttl, t0);
        n.handle_input(t0, ElectionInput::Release);
        assert_deletes_lease(n.poll_op(t0));
        n.handle_reply(t0, Reply::Deleted(Ok(())));
        // What the shell's last step does next: nothing, not a takeover of
        // the lease just deleted, nor a read to campaign again.
        assert!(n.poll_op(t0).is_none());
        assert!(!drain(&mut n)
            .iter()
            .any(|e| matches!(e, ElectionEffect::Acquired { .. })));
        // Not later either, and a follower that stops does not campaign.
        assert!(n.poll_op(t0 + ttl * 2).is_none());
        let mut follower = ElectionNode::new("v", "other", ttl, "leader", t0);
        follower.handle_input(t0, ElectionInput::Release);
        assert!(follower.poll_op(t0).is_none());
    }
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod store_tests;
