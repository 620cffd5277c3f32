//! The leader lease, as a pure state machine.
//!
//! Acquisition is a KV `create` when the key is absent, or a compare-and-set
//! takeover of a revision this follower has watched stay unchanged for the
//! whole lease TTL (the server sweeps expired keys on its own schedule, so
//! waiting for expiry alone would be slow). A holder renews every third of the
//! TTL and considers itself leader only until 3/4 of the TTL after the *send*
//! time of its last confirmed renewal: by the time a follower can take over,
//! the old leader has already stopped acting.

use std::time::{Duration, Instant};

use crate::config::ratios;
use crate::store::Revision;
use crate::wire::LeaderRecord;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Observed {
    Unknown,
    Absent,
    Present {
        revision: Revision,
        record: LeaderRecord,
        since: Instant,
    },
}

#[derive(Clone, Debug)]
struct Held {
    revision: Revision,
    epoch: u64,
    confirmed: Instant,
    next_renew: Instant,
    /// The store forgot the lease at this instant: until a renewal sent
    /// later is confirmed, the lease is kept but not acted on (another
    /// worker may have taken the forgotten key at once).
    unproven_since: Option<Instant>,
    /// Since the store last forgot, the key was read (or watched) and found
    /// ours. Until then no renewal is sent: a store that issues revisions
    /// again can give another holder's record the revision this lease
    /// knows, and a compare-and-set on it would land over that record
    /// unseen, proving a lease someone else holds.
    seen_since_reset: bool,
}

/// A KV operation the election thread should perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LeaseAction {
    /// Read the leader key and report it with [`LeaseCore::observe`].
    Read,
    /// `create(leader, record)`.
    Create(LeaderRecord),
    /// `update(leader, record, revision)` to take over a stale lease.
    Takeover {
        /// The stale revision.
        revision: Revision,
        /// The new record.
        record: LeaderRecord,
    },
    /// `update(leader, record, revision)` to renew.
    Renew {
        /// The current revision.
        revision: Revision,
        /// The record (carrying the epoch).
        record: LeaderRecord,
    },
}

/// The outcome of a [`LeaseAction`] write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    /// Written at this revision.
    Written(Revision),
    /// Lost a create or compare-and-set race.
    Conflict,
    /// Timed out or failed: it may or may not have been written.
    Unknown,
}

/// Something the manager should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LeaseEvent {
    /// This worker now leads with this epoch.
    Acquired {
        /// The new epoch.
        epoch: u64,
    },
    /// This worker no longer leads.
    Lost,
    /// The lease is held by someone (maybe this worker) with this epoch.
    Epoch(u64),
}

/// The election state machine of one worker.
#[derive(Debug)]
pub(crate) struct LeaseCore {
    worker: String,
    instance: String,
    ttl: Duration,
    renew_every: Duration,
    step_down_after: Duration,
    observed: Observed,
    held: Option<Held>,
    in_flight: bool,
    retry_at: Option<Instant>,
    /// Highest revision observed or written: older watch events (e.g. a
    /// replay that arrives after our own takeover) are stale and ignored.
    max_seen: Revision,
    /// After resigning: no campaign before this time.
    sit_out_until: Option<Instant>,
}

impl LeaseCore {
    /// A follower that has not looked at the key yet.
    pub(crate) fn new(worker: &str, instance: &str, ttl: Duration) -> Self {
        LeaseCore {
            worker: worker.to_string(),
            instance: instance.to_string(),
            ttl,
            renew_every: ratios::renew_every(ttl),
            step_down_after: ratios::step_down_after(ttl),
            observed: Observed::Unknown,
            held: None,
            in_flight: false,
            retry_at: None,
            max_seen: 0,
            sit_out_until: None,
        }
    }

    /// Whether this worker holds the lease.
    #[cfg(test)]
    pub(crate) fn is_leader(&self) -> bool {
        self.held.is_some()
    }

    /// Until when the held lease may be acted on (`None`: not leader).
    pub(crate) fn valid_until(&self) -> Option<Instant> {
        self.held.as_ref().map(|h| {
            let until = h.confirmed + self.step_down_after;
            h.unproven_since.map_or(until, |t| until.min(t))
        })
    }

    /// The revision of the held lease (for a conditional release).
    pub(crate) fn held_revision(&self) -> Option<Revision> {
        self.held.as_ref().map(|h| h.revision)
    }

    fn record(&self, epoch: u64) -> LeaderRecord {
        LeaderRecord {
            worker: self.worker.clone(),
            instance: self.instance.clone(),
            epoch,
        }
    }

    /// The key as seen by a watch or a read: `record` is `None` when the key
    /// is absent or deleted; `revision` is the revision of the value or of
    /// the delete marker (0 when a read found nothing). Observations older
    /// than what this worker has already seen are ignored.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        revision: Revision,
        record: Option<LeaderRecord>,
    ) -> Vec<LeaseEvent> {
        let mut events = Vec::new();
        if revision != 0 && revision < self.max_seen {
            return events;
        }
        self.max_seen = self.max_seen.max(revision);
        match record.map(|r| (revision, r)) {
            None => {
                self.observed = Observed::Absent;
                if self.held.take().is_some() {
                    events.push(LeaseEvent::Lost);
                }
            }
            Some((revision, record)) => {
                let mine = record.instance == self.instance;
                if let Some(held) = &mut self.held {
                    if !mine {
                        self.held = None;
                        events.push(LeaseEvent::Lost);
                    } else if held.unproven_since.is_some() {
                        // Ours as the store shows it now (see
                        // `seen_since_reset`): renew on this revision.
                        held.revision = revision;
                        held.seen_since_reset = true;
                    } else if revision > held.revision {
                        // Our own write whose answer we missed: adopt its
                        // revision, but not as a confirmation (send time
                        // unknown).
                        held.revision = revision;
                    }
                }
                // The record too, not only the revision: a store that went
                // back issues revisions again, and a new holder's write at a
                // revision seen before must not count as unchanged since
                // then (it was taken over while its holder renewed).
                let unchanged = matches!(&self.observed, Observed::Present { revision: r, record: seen, .. } if *r == revision && *seen == record);
                if !unchanged {
                    events.push(LeaseEvent::Epoch(record.effective_epoch(revision)));
                    self.observed = Observed::Present {
                        revision,
                        record,
                        since: now,
                    };
                }
            }
        }
        events
    }

    /// The worker ID this lease core campaigns for.
    pub(crate) fn worker(&self) -> &str {
        &self.worker
    }

    /// Whether `revision`, read from the store, is below one already seen.
    pub(crate) fn went_back(&self, revision: Revision) -> bool {
        revision != 0 && revision < self.max_seen
    }

    /// The store forgot the lease key: revisions start again, so the
    /// highest one seen no longer marks older observations as stale.
    pub(crate) fn store_reset(&mut self, now: Instant) -> Vec<LeaseEvent> {
        self.max_seen = 0;
        match &mut self.held {
            None => self.observed = Observed::Unknown,
            // A held lease is kept: the key is read at once, and the holder
            // steps down unless it still shows its record; then a renewal
            // (a compare-and-set on the revision read) proves it. Giving it
            // up at once made a rolled-back leader take office twice in a
            // row, and the second takeover could leave the group without work
            // (tests/store_rollback.rs, 1 run in ~10). Until that renewal
            // is confirmed it is not acted on (release first): the store
            // may show the key absent or expired, and another worker may
            // have taken it at once, under the same epoch (the simulator's
            // `store` preset: two leaders wrote, and partitions got two
            // owners).
            Some(h) => {
                h.unproven_since = Some(h.unproven_since.unwrap_or(now));
                h.seen_since_reset = false;
                h.next_renew = h.next_renew.min(now);
            }
        }
        Vec::new()
    }

    /// A watch opened again showed the key below a revision already seen,
    /// or not at all: the store may have forgotten while nobody watched
    /// (a bucket dropped or rolled back between the end of one watch and
    /// the opening of the next; only the ended watch would have said so).
    /// A follower reads the key again instead of keeping what it observed:
    /// the read tells whether the store went back (see
    /// [`went_back`](Self::went_back)), and the wait for a takeover starts
    /// again then. Kept, the observation let a follower count a new
    /// holder's renewals — below the revision it had seen, so ignored as
    /// stale — as a lease unchanged for a TTL, and take it over once the
    /// holder's renewals reached that revision again with the same record
    /// (the simulator's `store` preset: two processes acting on an
    /// unexpired lease).
    pub(crate) fn recheck(&mut self) {
        if self.held.is_none() && matches!(self.observed, Observed::Present { .. }) {
            self.observed = Observed::Unknown;
        }
    }

    /// Steps down when the lease can no longer be trusted.
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<LeaseEvent> {
        match &self.held {
            Some(h) if now >= h.confirmed + self.step_down_after => {
                self.held = None;
                self.observed = Observed::Unknown;
                vec![LeaseEvent::Lost]
            }
            _ => Vec::new(),
        }
    }

    /// The write to perform now, if any. At most one is in flight.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<LeaseAction> {
        if self.in_flight || self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        let action = if let Some(h) = &self.held {
            (now >= h.next_renew).then(|| {
                if h.unproven_since.is_some() && !h.seen_since_reset {
                    LeaseAction::Read
                } else {
                    LeaseAction::Renew {
                        revision: h.revision,
                        record: self.record(h.epoch),
                    }
                }
            })
        } else {
            let sitting_out = self.sit_out_until.is_some_and(|t| now < t);
            match &self.observed {
                Observed::Unknown => Some(LeaseAction::Read),
                _ if sitting_out => None,
                Observed::Absent => Some(LeaseAction::Create(self.record(0))),
                Observed::Present {
                    revision,
                    record,
                    since,
                } => (record.instance == self.instance || now >= *since + self.ttl).then(|| {
                    LeaseAction::Takeover {
                        revision: *revision,
                        record: self.record(0),
                    }
                }),
            }
        };
        self.in_flight = action.is_some();
        action
    }

    /// The result of the action returned by [`poll`](Self::poll), which was
    /// sent at `sent`.
    pub(crate) fn on_result(
        &mut self,
        now: Instant,
        sent: Instant,
        action: &LeaseAction,
        outcome: WriteOutcome,
    ) -> Vec<LeaseEvent> {
        self.in_flight = false;
        self.retry_at = None;
        let mut events = Vec::new();
        match (action, outcome) {
            (LeaseAction::Read, _) => {}
            (LeaseAction::Renew { .. }, WriteOutcome::Written(revision)) => {
                self.max_seen = self.max_seen.max(revision);
                if let Some(h) = &mut self.held {
                    h.revision = revision;
                    h.confirmed = h.confirmed.max(sent);
                    if h.unproven_since.is_some_and(|t| sent >= t) {
                        h.unproven_since = None;
                    }
                    // Sent before the store forgot, it proves nothing:
                    // renew again at once.
                    h.next_renew = match h.unproven_since {
                        Some(_) => now,
                        None => sent + self.renew_every,
                    };
                }
            }
            (LeaseAction::Renew { .. }, WriteOutcome::Conflict) => {
                if self.held.take().is_some() {
                    events.push(LeaseEvent::Lost);
                }
                self.observed = Observed::Unknown;
            }
            (LeaseAction::Renew { .. }, WriteOutcome::Unknown) => {
                if let Some(h) = &mut self.held {
                    // Retry soon; a renewal that landed shows up as a
                    // conflict on the retry, resolved by the next read.
                    h.next_renew = now + self.renew_every / 4;
                }
                self.observed = Observed::Unknown;
            }
            (_, WriteOutcome::Written(revision)) => {
                self.max_seen = self.max_seen.max(revision);
                self.held = Some(Held {
                    revision,
                    epoch: revision,
                    confirmed: sent,
                    next_renew: sent + self.renew_every,
                    unproven_since: None,
                    seen_since_reset: true,
                });
                events.push(LeaseEvent::Acquired { epoch: revision });
            }
            (_, WriteOutcome::Conflict) => self.observed = Observed::Unknown,
            (_, WriteOutcome::Unknown) => {
                self.observed = Observed::Unknown;
                self.retry_at = Some(now + self.renew_every / 2);
            }
        }
        events
    }

    /// A read failed; try again a little later.
    pub(crate) fn read_failed(&mut self, now: Instant) {
        self.in_flight = false;
        self.retry_at = Some(now + self.renew_every / 2);
    }

    /// When to call `poll`/`tick` next, at the latest.
    pub(crate) fn next_deadline(&self, now: Instant) -> Instant {
        if let Some(t) = self.retry_at {
            return t.max(now);
        }
        let campaign_from = self.sit_out_until.unwrap_or(now).max(now);
        match (&self.held, &self.observed) {
            (Some(h), _) => h.next_renew.min(h.confirmed + self.step_down_after),
            (None, Observed::Unknown) => now,
            (None, Observed::Present { since, .. }) => (*since + self.ttl).max(campaign_from),
            (None, Observed::Absent) => campaign_from,
        }
    }

    /// Gives the lease up and stays out of the election until `until`, e.g.
    /// because this worker's own plug-in code keeps failing as leader.
    /// Returns the revision of the lease it held, for the caller to delete
    /// so that another worker takes over at once.
    pub(crate) fn resign_until(&mut self, until: Instant) -> Option<Revision> {
        self.sit_out_until = Some(until);
        self.observed = Observed::Unknown;
        self.held.take().map(|h| h.revision)
    }

    /// Forgets leadership without a write (used when stopping after the key
    /// was released or when NATS is gone).
    pub(crate) fn resign(&mut self) -> bool {
        self.held.take().is_some()
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
