//! Store faults (issue 11): the store itself forgets. A bucket rolled back by
//! its last acknowledged writes (their revisions issued again), a bucket
//! dropped (recreated, empty, by the next operation on it), the whole store
//! emptied. Each is followed by a process joining, so that recovering means
//! the leader can decide again, not only that nobody let go (after a fault
//! of the workers bucket, the join waits a heartbeat TTL: a process that
//! joins while the running workers have not written their keys again can
//! claim a running worker's ID, the gap docs/operations.md states); in the `store`
//! preset the world then checks that every partition is owned again, as the
//! published view shows it, and the joiner given work, within
//! [`SimConfig::store_bound`](super::SimConfig::store_bound).

use std::time::Instant;

use super::world::World;

/// A store fault whose recovery is awaited.
pub(crate) struct Recovery {
    pub since: Instant,
    pub what: String,
}

impl World<'_> {
    /// Injects one store fault at `now`.
    pub(crate) fn store_fault(&mut self, now: Instant) {
        let buckets = [
            self.names.workers.clone(),
            self.names.leader.clone(),
            self.names.assignments.clone(),
        ];
        let kinds = self.sim.store_kinds;
        let kind = kinds[self.rng.index(kinds.len())];
        let what = match kind {
            i @ 0..=2 => {
                let k = 1 + self.rng.index(8);
                let undone = self.backend.rollback(&buckets[usize::from(i)], k);
                format!("ROLLBACK of {} by {undone} writes", buckets[usize::from(i)])
            }
            i @ 3..=5 => {
                let name = &buckets[usize::from(i) - 3];
                self.backend.drop_bucket(name);
                format!("DROP of {name}")
            }
            _ => {
                self.backend.empty();
                "EMPTY store".to_string()
            }
        };
        self.note(what.clone());
        self.report.store_faults += 1;
        if matches!(kind, 1 | 4 | 6) {
            // The lease the store forgot: its holders step down when their
            // watch ends, but one that cannot see it yet (frozen, or with
            // an operation in flight) believes it until it expires.
            self.stale_leases = self
                .procs
                .iter()
                .filter_map(|p| Some((p.label.clone(), p.running()?.lease.valid_until()?)))
                .filter(|(_, until)| *until > now)
                .collect();
            // Epochs start again: the fence check counts from the next term
            // acquired from now on.
            self.office
                .epoch
                .store(0, std::sync::atomic::Ordering::SeqCst);
            self.office
                .lease_forgot
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        if matches!(kind, 0 | 3 | 6) {
            self.workers_forgot_at = Some(now);
        }
        if self.procs.len() < self.sim.workers + 3 {
            let rebuilt = self
                .workers_forgot_at
                .map_or(now, |t| t + self.env.config.heartbeat_ttl);
            self.join_at = Some(rebuilt.max(now));
        }
        self.recovery = Some(Recovery { since: now, what });
    }

    /// Starts the join that follows a store fault once it is due.
    pub(crate) fn due_join(&mut self, now: Instant) {
        if self.join_at.is_some_and(|t| t <= now) {
            self.join_at = None;
            self.note("JOIN a new process".into());
            self.spawn(None);
        }
    }

    /// With a store fault awaiting recovery: done when every partition has
    /// exactly one owner and every process owns something (when there is
    /// enough work: the joiner was given some, so the leader decides
    /// again); a failure past the bound. (The published view is not
    /// required to show every owner again: a record the store lost is
    /// written again only when the leader next changes it.)
    pub(crate) fn check_recovery(&mut self, now: Instant) -> Result<(), String> {
        let Some(r) = &self.recovery else {
            return Ok(());
        };
        if self.join_at.is_some() {
            return Ok(());
        }
        let took = now - r.since;
        if self.recovered() {
            self.report.slowest_recovery = self.report.slowest_recovery.max(took);
            self.recovery = None;
            return Ok(());
        }
        let bound = self.sim.store_bound();
        if self.sim.check_recovery && took > bound {
            return Err(format!(
                "not recovered {bound:?} after the {}: {}",
                r.what,
                self.describe_unowned()
            ));
        }
        Ok(())
    }

    fn recovered(&self) -> bool {
        if !self.converged || self.procs.iter().any(|p| p.running().is_none()) {
            return false;
        }
        let enough = self.env.partitions.len() >= self.procs.len();
        self.procs.iter().all(|p| {
            p.counted()
                .is_some_and(|r| r.owned().next().is_some() || !enough)
        })
    }
}
