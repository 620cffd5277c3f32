//! After the store forgot: grant nothing new for one fence horizon.
//!
//! When the `workers` and `assignments` buckets both lost a live worker (a
//! store emptied or rolled back, then a leader change before that worker's
//! next heartbeat), a leader knows nothing of it: no heartbeat, no record.
//! Whatever it holds looks free. Within one heartbeat TTL that worker either
//! heartbeats again (its key is written anew, and what it reports having
//! been told marks it as holding anything, see `check_applied`) or fences
//! itself (it cannot confirm a heartbeat for `self_fence_after`, less than
//! the TTL, and releases everything). So once a leader learns the store
//! forgot, it revokes as before but grants nothing new until a TTL has
//! passed. A group whose store never forgot pays nothing.

use std::collections::BTreeSet;
use std::time::Instant;

use super::Calculator;
use crate::{Partition, Placement};

impl Calculator {
    /// The store forgot, as found at `now`: no new grant before a heartbeat
    /// TTL from now (an earlier quiet period is extended, never shortened).
    pub(crate) fn quiesce(&mut self, now: Instant) {
        let until = now + self.config.heartbeat_ttl;
        if self.quiet_until.is_none_or(|t| t < until) {
            if self.quiet_until.is_none_or(|t| t <= now) {
                log::warn!(
                    "[{}] the store forgot: granting nothing new for {:?}, until every live worker has heartbeated or fenced itself",
                    self.leader,
                    self.config.heartbeat_ttl
                );
            }
            self.quiet_until = Some(until);
        }
        self.dirty = true;
    }

    /// Whether new grants are held back at `now`.
    pub(super) fn quiet(&self, now: Instant) -> bool {
        self.quiet_until.is_some_and(|t| now < t)
    }

    /// When the quiet period ends, if it has not yet (a deadline).
    pub(super) fn quiet_deadline(&self) -> Option<Instant> {
        self.quiet_until.filter(|t| *t > self.ticked)
    }

    /// At the end of the quiet period, publish what was held back.
    pub(super) fn end_quiet(&mut self, now: Instant) {
        if self.quiet_until.is_some_and(|t| now >= t) {
            self.quiet_until = None;
            self.dirty = true;
        }
    }

    /// `target` without any grant: each worker keeps, of its target, only
    /// what its published key already lists (removals still go ahead).
    pub(super) fn without_grants(&self, target: &Placement) -> Placement {
        let published = self.ledger.placement();
        target
            .iter()
            .map(|(w, ps)| {
                let held: BTreeSet<&Partition> = published.get(w).into_iter().flatten().collect();
                let kept = (ps.iter()).filter(|p| held.contains(p)).cloned().collect();
                (w.clone(), kept)
            })
            .collect()
    }
}
