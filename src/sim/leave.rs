//! Graceful leave: a simulated `Manager::stop()`, stepping the manager's
//! [`Departure`] (the order `Threads::stop` in `src/runtime/start.rs`
//! follows too): an assigned worker sends [`HeartbeatInput::Leave`] and
//! waits for the heartbeat node's `Drained` until the departure's drain
//! deadline, then sends [`HeartbeatInput::Quit`]; once the node says `Exited`, the election is
//! told [`ElectionInput::Release`] and stepped once more, the leader term
//! stops, and the process exits when its queued callbacks have returned
//! (the callback thread is joined) or the deadline passed. Every decision
//! — what to release, when the key is deleted, how the lease is handed
//! over — is the nodes'.
//!
//! The world checks what a leave promises (see [`World::check_leaves`]): the
//! leaver's partitions are owned again within
//! [`SimConfig::handoff_bound`](super::SimConfig::handoff_bound) of a calm
//! group (no emergency: no heartbeat TTL, no grace), and never by two
//! processes at once (invariant 2, which counts a leaver until it exits).

use std::collections::BTreeSet;
use std::time::Instant;

use crate::core::calculator::Phase;
use crate::core::departure::Departure;
use crate::core::election::ElectionInput;
use crate::core::heartbeat::HeartbeatInput;

use super::node::{Notes, Running};
use super::world::World;
use super::Env;
use crate::clock::Clock;

/// Where a stopping process is.
#[derive(Debug)]
pub(crate) enum Leaving {
    /// `Leave` sent; `Quit` follows at `Drained` or at `until`.
    Draining { until: Instant, deadline: Instant },
    /// `Quit` sent; waiting for `Exited`.
    Quitting { deadline: Instant },
    /// The election was told to release the lease: one more step of it.
    Releasing { deadline: Instant },
    /// The nodes are done; the process exits once its callbacks returned.
    Exiting { deadline: Instant },
}

impl Running {
    /// `Manager::stop()` called at `now`.
    pub fn stop(&mut self, env: &Env, now: Instant) {
        if self.leaving.is_some() {
            return;
        }
        let assigned = self.assigned && !self.degraded;
        let (departure, first) = Departure::begin(&env.config, now, assigned);
        self.beat.push(first);
        let deadline = departure.deadline();
        self.leaving = Some(match departure.drain_until() {
            Some(until) => Leaving::Draining { until, deadline },
            None => Leaving::Quitting { deadline },
        });
    }

    /// Whether the election thread has ended.
    pub(super) fn election_ended(&self) -> bool {
        matches!(self.leaving, Some(Leaving::Exiting { .. }))
    }

    /// The heartbeat node says the worker holds nothing any more.
    pub(super) fn drained(&mut self, _now: Instant, notes: &mut Notes) {
        if let Some(Leaving::Draining { deadline, .. }) = self.leaving {
            notes.trace.push(format!("{} drained", self.id));
            self.beat.push(HeartbeatInput::Quit);
            self.leaving = Some(Leaving::Quitting { deadline });
        }
    }

    /// The heartbeat node is done: released, key deleted (or tried).
    pub(super) fn exited(&mut self, now: Instant, notes: &mut Notes) {
        notes.trace.push(format!("{} left", self.id));
        let deadline = match self.leaving {
            Some(Leaving::Quitting { deadline } | Leaving::Draining { deadline, .. }) => deadline,
            // Exited without being stopped cannot happen; exit at once.
            _ => now,
        };
        self.election.push(ElectionInput::Release);
        self.leaving = Some(Leaving::Releasing { deadline });
    }

    /// Runs after each step of the election: the release had its step.
    pub(super) fn after_election_step(&mut self, _now: Instant, _notes: &mut Notes) {
        if let Some(Leaving::Releasing { deadline }) = self.leaving {
            self.leader = None;
            self.leaving = Some(Leaving::Exiting { deadline });
        }
    }

    /// The drain's deadline, and the exit once the callbacks returned.
    pub(super) fn leave_step(&mut self, now: Instant, notes: &mut Notes) {
        match self.leaving {
            Some(Leaving::Draining { until, deadline }) if now >= until => {
                notes
                    .trace
                    .push(format!("{} drain not finished in time", self.id));
                self.beat.push(HeartbeatInput::Quit);
                self.leaving = Some(Leaving::Quitting { deadline });
            }
            Some(Leaving::Exiting { deadline }) if !self.busy() || now >= deadline => {
                self.quit = true;
            }
            _ => {}
        }
    }
}

/// A leave whose promise is awaited.
pub(crate) struct LeaveWatch {
    pub label: String,
    pub since: Instant,
    /// The disturbing faults injected before it, if the group had settled
    /// then (see [`World::calm`]).
    pub calm: Option<u64>,
    pub partitions: BTreeSet<String>,
}

impl World<'_> {
    /// The count of disturbing faults so far, if the group has settled (every
    /// partition has one owner, no callback is running, a leader is
    /// `Stable` and past a new leader's settling time — a heartbeat TTL, the
    /// emergency grace and an interval — in office, no disturbing fault for a
    /// handoff bound): a promise with a tight
    /// bound is checked only from a settled group that no disturbing fault
    /// hit meanwhile.
    pub(crate) fn calm(&self) -> Option<u64> {
        let c = &self.env.config;
        let settle = c.heartbeat_ttl + c.emergency_grace + c.heartbeat_interval;
        let now = self.clock.now();
        let stable = self.procs.iter().any(|p| {
            p.running()
                .and_then(|r| r.leader.as_ref())
                .is_some_and(|l| {
                    l.phase() == Some(Phase::Stable)
                        && l.in_office.is_some_and(|t| now >= t + settle)
                })
        });
        let quiet = self
            .disturbed_at
            .is_none_or(|t| now >= t + self.sim.handoff_bound());
        (self.converged && stable && quiet).then_some(self.disturbances)
    }

    /// A disturbing fault at `now` (its effects may outlast it a while: a
    /// calm group is also one that none hit for a handoff bound).
    pub(crate) fn disturb(&mut self, now: Instant) {
        self.disturbances += 1;
        self.disturbed_at = Some(now);
    }

    /// Stops process `index` gracefully.
    pub(crate) fn leave(&mut self, index: usize, now: Instant) {
        let p = &mut self.procs[index];
        let Some(r) = p.running_mut() else { return };
        if r.leaving.is_some() {
            return;
        }
        let partitions = r.owned().cloned().collect();
        r.stop(&self.env, now);
        let label = p.label.clone();
        self.note(format!("LEAVE {label}"));
        self.leaves.push(LeaveWatch {
            label,
            since: now,
            calm: self.calm(),
            partitions,
        });
    }

    /// Each leave's partitions owned again by others once the group stayed
    /// calm (no disturbing fault) for the handoff bound after it.
    pub(crate) fn check_leaves(&mut self, now: Instant) -> Result<(), String> {
        let bound = self.sim.handoff_bound();
        let mut result = Ok(());
        let mut kept = Vec::new();
        for w in std::mem::take(&mut self.leaves) {
            if w.calm != Some(self.disturbances) {
                continue;
            }
            if now < w.since + bound {
                kept.push(w);
                continue;
            }
            self.report.leaves_checked += 1;
            let unowned: Vec<&String> = w
                .partitions
                .iter()
                .filter(|id| self.env.partitions.iter().any(|p| p.id() == id.as_str()))
                .filter(|id| {
                    !self.procs.iter().any(|p| {
                        p.label != w.label
                            && p.counted().is_some_and(|r| r.owned().any(|o| o == *id))
                    })
                })
                .collect();
            if !unowned.is_empty() && result.is_ok() {
                result = Err(format!(
                    "{} left at {:?}; {} of its partitions not owned by another process {bound:?} later: {unowned:?}",
                    w.label,
                    w.since - self.t0,
                    unowned.len()
                ));
            }
        }
        self.leaves = kept;
        result
    }
}
