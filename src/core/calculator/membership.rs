//! Membership and liveness: who is live as the leader hears heartbeats,
//! which workers a restarted process replaced, which applied versions the
//! store has no record of (suspects), and the death verdicts — a loss (an
//! emergency) or a fleet restart (one more cold start).

use std::time::{Duration, Instant};

use super::{Calculator, Member, Output};
use crate::core::ledger::Addressee;
use crate::strategy::WorkerInfo;
use crate::wire::WorkerRecord;

impl Calculator {
    /// A heartbeat (or the initial replay) of a worker's record.
    pub(crate) fn observe_worker(&mut self, now: Instant, worker: &str, record: &WorkerRecord) {
        if self.is_blind(now) {
            // Recovery grace: heartbeats were missing only from this
            // leader's point of view, so every member starts afresh.
            log::info!(
                "leader hears heartbeats again after {:?}",
                now - self.last_heard
            );
            for m in self.members.values_mut() {
                m.last_seen = m.last_seen.max(now);
            }
        }
        self.last_heard = now;
        let addressee = Addressee {
            instance: record.instance.clone(),
            incarnation: record.incarnation,
        };
        self.dirty |= !self.members.contains_key(worker);
        let member = self
            .members
            .entry(worker.to_string())
            .or_insert_with(|| Member {
                addressee: addressee.clone(),
                applied: 0,
                told: 0,
                leaving: false,
                heard: true,
                last_seen: now,
                joined: now,
                info: WorkerInfo::new(worker),
                established: false,
            });
        if member.addressee != addressee {
            // A restarted process (or a new incarnation) under the same ID:
            // as far as windows go, it has just joined.
            member.joined = now;
            member.established = false;
        }
        member.addressee = addressee.clone();
        member.applied = record.applied;
        member.told = record.told.max(record.applied);
        member.leaving = record.leaving;
        member.info = record.info(worker);
        member.heard = true;
        member.last_seen = now;
        self.clear_if_void(worker, &addressee);
        if self.adopted {
            // What it was told, not only what it applied: a callback still
            // running may have passed that version's tokens downstream.
            self.check_applied(now, worker, &addressee, record.told.max(record.applied));
        }
        self.dirty |= self.ledger.observe(worker, &addressee, record.applied);
    }

    /// Versions, and so fencing tokens, go on from above `floor` (the wall
    /// clock in milliseconds at the term's start). A store that forgot
    /// (emptied, rolled back) takes with it the records a new leader would
    /// number on above; the live workers report what they were told, but a
    /// worker that died meanwhile cannot, and a downstream may hold its
    /// token. Numbering from the wall clock keeps every term's tokens above
    /// those of the terms before it, whatever the store forgot, as long as
    /// the leaders' clocks are apart by less than the time between their
    /// terms (a term issues far fewer than one version per millisecond).
    pub(crate) fn floor_versions(&mut self, floor: u64) {
        self.version = self.version.max(floor.min(crate::wire::MAX_COUNTER / 2));
    }

    /// `worker` applied (or was handed) `applied`: when the store has no
    /// record of that version for it, the store lost writes (a rolled-back or emptied
    /// server). Until the worker applies one of this leader's versions it
    /// may hold anything; and versions, so fencing tokens, go on from above
    /// what it applied, or it would ignore this leader's records as old.
    pub(super) fn check_applied(
        &mut self,
        now: Instant,
        worker: &str,
        addressee: &Addressee,
        applied: u64,
    ) {
        // Above whatever a worker was handed, even one already suspect that
        // took another leader's version since: the same number with other
        // partitions would not be news to it, and it would keep what that
        // version gave it while this leader counted it as released.
        self.version = self.version.max(applied);
        if applied == 0 || !self.ledger.suspect(worker, addressee, applied) {
            return;
        }
        log::warn!(
            "[{}] {worker} applied v{applied}, which the store has no record of: the store lost writes; its partitions count as held until it applies a new version",
            self.leader,
        );
        // Others the store forgot may not have heartbeated yet.
        self.quiesce(now);
    }

    /// `worker`'s last heartbeat is known to have been written by `by`
    /// (see `leader::BeatLog`): it counts as seen then, if that is earlier
    /// than the replay that showed it.
    pub(crate) fn seen_by(&mut self, worker: &str, by: Instant) {
        if let Some(m) = self.members.get_mut(worker) {
            m.last_seen = m.last_seen.min(by);
        }
    }

    /// A restarted process's old record still lists what the old process
    /// held: it is deleted before those partitions are granted again, so
    /// that readers of the bucket never see them under two workers.
    pub(super) fn clear_if_void(&mut self, worker: &str, addressee: &Addressee) {
        if self.ledger.shows_void(worker, addressee) && !self.clears.iter().any(|w| w == worker) {
            self.clears.push(worker.to_string());
        }
    }

    /// A worker deleted its key: it left after releasing everything. Its
    /// assignment key is cleared at the next tick.
    pub(crate) fn worker_gone(&mut self, worker: &str) {
        self.dirty = true;
        self.members.remove(worker);
        if self.ledger.forget(worker) {
            self.clears.push(worker.to_string());
        }
    }

    /// Until when this leader can tell silence from death: its own beats
    /// arrive every interval, so after three missing intervals it is blind
    /// (its watch or link is down), and only a heartbeat ends that.
    fn sighted_until(&self) -> Instant {
        self.last_heard + self.config.heartbeat_interval * 3
    }

    pub(super) fn is_blind(&self, now: Instant) -> bool {
        now > self.sighted_until()
    }

    /// The earliest death verdict a tick can give. None while this leader
    /// is blind, or would be by the time it ticks again: a verdict past
    /// [`sighted_until`](Self::sighted_until) waits for a heartbeat, an
    /// input, however long ago it was due.
    pub(super) fn next_verdict(&self) -> Option<Instant> {
        let dead_after = self.config.heartbeat_ttl + self.config.emergency_grace;
        let verdict = self
            .members
            .values()
            .map(|m| m.last_seen + dead_after + Duration::from_millis(1))
            .min()?;
        (verdict.max(self.ticked) <= self.sighted_until()).then_some(verdict)
    }

    pub(super) fn detect_deaths(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.is_blind(now) {
            return;
        }
        let ttl = self.config.heartbeat_ttl;
        let dead_after = ttl + self.config.emergency_grace;
        let dead: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.last_seen) > dead_after)
            .map(|(w, _)| w.clone())
            .collect();
        if dead.is_empty() {
            return;
        }
        self.dirty = true;
        let restart = self.is_fleet_restart(now, &dead);
        let held_work = dead
            .iter()
            .any(|w| self.target.as_ref().is_some_and(|t| t.contains_key(w)));
        for w in &dead {
            self.members.remove(w);
            if self.ledger.forget(w) {
                out.push(Output::Clear(w.clone()));
            }
        }
        out.push(Output::Died(dead));
        if restart {
            self.restart_until = Some(now + self.config.cold_start_window);
            self.emergency_due = false;
        } else if held_work && self.restart_until.is_none() {
            self.emergency_due = true;
        }
    }

    /// Whether the deaths in `dead` are a fleet restart rather than a loss:
    /// more than `restart_ratio` of the target is missing *and* no survivor
    /// that was working before the loss holds any published partition. A zone loss, however large, leaves
    /// survivors working (the leader's own worker, or the workers a new
    /// leader adopted), so their peers' partitions go to them at once; after
    /// an all-gone-then-back restart the workers present are new processes
    /// holding nothing, and waiting for the rest to come back makes it one
    /// cold start instead of an emergency followed by a planned rebalance.
    pub(super) fn is_fleet_restart(&self, now: Instant, dead: &[String]) -> bool {
        let ttl = self.config.heartbeat_ttl;
        let Some(target) = &self.target else {
            return false;
        };
        let missing = target
            .keys()
            .filter(|w| {
                self.members
                    .get(w.as_str())
                    .is_none_or(|m| now.saturating_duration_since(m.last_seen) > ttl)
            })
            .count();
        let mostly_gone =
            target.len() > 1 && missing as f64 / target.len() as f64 > self.config.restart_ratio;
        if !mostly_gone {
            return false;
        }
        // Working since before the loss: a process that came back after it
        // may already have been given its old partitions again.
        let lost_at = dead
            .iter()
            .filter_map(|w| self.members.get(w))
            .map(|m| m.last_seen)
            .min();
        let published = self.ledger.placement();
        let survivors_work = self.members.iter().any(|(w, m)| {
            m.heard
                && !dead.contains(w)
                && (m.established || lost_at.is_some_and(|t| m.joined < t))
                && published.get(w).is_some_and(|ps| !ps.is_empty())
        });
        !survivors_work
    }
}
