//! Scheduling of windows: when a rebalance is due (cold start, restart,
//! emergency, operator, planned window), the phase reported, and when the
//! leader must tick next.

use std::time::Instant;

use super::{Calculator, Member, Phase};
use crate::RebalanceKind;

impl Calculator {
    /// Members waiting for a planned rebalance: not in the target, or with
    /// nothing in it although they (re)joined after the last rebalance and
    /// there is enough work to go round (e.g. a process restarted under the
    /// ID of one that had drained).
    pub(super) fn joiners(&self) -> impl Iterator<Item = &Member> {
        let target = self.target.as_ref();
        let drained = &self.operator.drained;
        let takers = self
            .members
            .iter()
            .filter(|(w, m)| !m.leaving && !drained.contains(*w))
            .count();
        let busy_enough = self.partitions.len() >= takers;
        let last = self.last_rebalance;
        self.members
            .iter()
            .filter(move |(w, m)| {
                let Some(t) = target else { return false };
                !m.leaving
                    && m.heard
                    && !drained.contains(*w)
                    && match t.get(*w) {
                        None => true,
                        Some(ps) => {
                            ps.is_empty() && busy_enough && last.is_none_or(|l| m.joined > l)
                        }
                    }
            })
            .map(|(_, m)| m)
    }

    pub(super) fn window_deadline(&self) -> Option<Instant> {
        let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
        for m in self.joiners() {
            first = Some(first.map_or(m.joined, |f| f.min(m.joined)));
            last = Some(last.map_or(m.joined, |l| l.max(m.joined)));
        }
        let window = self.config.planned_scale_window;
        let mut deadline = (last? + window).min(first? + window * 3);
        if let Some(t) = self.last_rebalance {
            deadline = deadline.max(t + self.config.rebalance_cooldown);
        }
        if let Some(t) = self.settle_until {
            deadline = deadline.max(t);
        }
        Some(deadline)
    }

    /// The rebalances waiting for their time or for a tick, by priority,
    /// and from when each is due. `due` and `next_deadline` both read it,
    /// so a deadline is reported exactly for what a tick then does.
    fn awaited(&self) -> Vec<(Due, RebalanceKind)> {
        let Some(target) = &self.target else {
            // A cold start places work only once somebody is there to take it.
            let at = self.started + self.config.cold_start_window;
            return (!self.members.is_empty())
                .then_some((Due::At(at), RebalanceKind::ColdStart))
                .into_iter()
                .collect();
        };
        if let Some(until) = self.restart_until {
            // Whoever joins meanwhile is placed by the restart's round.
            return vec![(Due::At(until), RebalanceKind::Restart)];
        }
        // A spill places partitions nobody may own by label: like an
        // emergency, it waits for no window and revokes nothing.
        let emergency = self
            .emergency_due
            .then_some((Due::Now, RebalanceKind::Emergency));
        let spill =
            (self.parking.spill_at(&self.config)).map(|t| (Due::At(t), RebalanceKind::Emergency));
        let operator = self
            .operator_due()
            .map(|d| (d, RebalanceKind::PlannedScale));
        let departed = target
            .keys()
            .any(|w| self.members.get(w).is_none_or(|m| m.leaving))
            .then_some((Due::Now, RebalanceKind::PlannedScale));
        let partitions = self.partitions_dirty.then(|| {
            let kind = self
                .pending_reason
                .unwrap_or(RebalanceKind::PartitionsChanged);
            (Due::Now, kind)
        });
        let window = (self.window_deadline()).map(|t| (Due::At(t), RebalanceKind::PlannedScale));
        [emergency, spill, operator, departed, partitions, window]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The rebalance due at `now`, if any.
    pub(super) fn due(&self, now: Instant) -> Option<RebalanceKind> {
        self.awaited()
            .into_iter()
            .find(|(d, _)| d.by(now))
            .map(|(_, kind)| kind)
    }

    /// When `tick` should run next, at the latest; `None` when only an
    /// input can change anything. Exact: a deadline is reported only for
    /// what a tick at that instant does (a death verdict, a rebalance or
    /// the strategy's retry, a handoff timeout, a key written again), so once a tick has run no
    /// deadline reported is due already. What an input leaves to do (a key
    /// to clear, a grant an acknowledgement allows) is done by the tick the
    /// caller runs after each input.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let rebalance = self
            .awaited()
            .into_iter()
            .map(|(d, _)| d.instant(self.ticked))
            .min()
            // A failing strategy is not asked again before its retry.
            .map(|t| self.strategy_retry.retry_at().map_or(t, |r| t.max(r)));
        let handoff =
            (self.removal_times.values().next()).map(|t| *t + self.config.handoff_timeout);
        [
            self.next_verdict(),
            rebalance,
            handoff,
            self.next_retell(),
            self.quiet_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn compute_phase(&mut self) -> Phase {
        if self.target.is_none() {
            return Phase::ColdStart;
        }
        if self.restart_until.is_some() {
            return Phase::Scaling;
        }
        let settled = self.settled;
        // An emergency lasts until its assignment is written; a cold start
        // whose first round granted everything is simply done.
        let writing_emergency = self.emergency_active && self.unconfirmed.is_some();
        if !settled || self.emergency_due || writing_emergency {
            return if self.emergency_active || self.emergency_due {
                Phase::Emergency
            } else {
                Phase::Rebalancing
            };
        }
        self.emergency_active = false;
        if self.window_deadline().is_some() {
            return Phase::Scaling;
        }
        Phase::Stable
    }
}

/// From when a rebalance is due.
#[derive(Clone, Copy, Debug)]
pub(super) enum Due {
    /// At the next tick: nothing but the tick is awaited.
    Now,
    /// From this instant.
    At(Instant),
}

impl Due {
    fn by(self, now: Instant) -> bool {
        match self {
            Due::Now => true,
            Due::At(t) => now >= t,
        }
    }

    /// The instant to report, given the last tick's: a rebalance due now
    /// was made due by an input since (after a tick, only a strategy's
    /// retry holds one back).
    fn instant(self, ticked: Instant) -> Instant {
        match self {
            Due::Now => ticked,
            Due::At(t) => t,
        }
    }
}
