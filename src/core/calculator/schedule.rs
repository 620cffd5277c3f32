//! Scheduling of windows: when a rebalance is due (cold start, restart,
//! emergency, operator, planned window), the phase reported, and when the
//! leader must tick next.

use std::time::{Duration, Instant};

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

    pub(super) fn due(&self, now: Instant) -> Option<RebalanceKind> {
        let Some(target) = &self.target else {
            let open = now >= self.started + self.config.cold_start_window;
            return (open && !self.members.is_empty()).then_some(RebalanceKind::ColdStart);
        };
        if let Some(until) = self.restart_until {
            return (now >= until).then_some(RebalanceKind::Restart);
        }
        if self.emergency_due || self.parking.spill_due(&self.config, now) {
            // A spill places partitions nobody may own by label: like an
            // emergency, it waits for no window and revokes nothing.
            return Some(RebalanceKind::Emergency);
        }
        if self.operator_due(now) {
            return Some(RebalanceKind::PlannedScale);
        }
        let departed = target
            .keys()
            .any(|w| self.members.get(w).is_none_or(|m| m.leaving));
        if departed {
            return Some(RebalanceKind::PlannedScale);
        }
        if self.partitions_dirty {
            return Some(
                self.pending_reason
                    .unwrap_or(RebalanceKind::PartitionsChanged),
            );
        }
        match self.window_deadline() {
            Some(deadline) if now >= deadline => Some(RebalanceKind::PlannedScale),
            _ => None,
        }
    }

    /// When `tick` should run next, at the latest.
    pub fn next_deadline(&self) -> Option<Instant> {
        let dead_after = self.config.heartbeat_ttl + self.config.emergency_grace;
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for m in self.members.values() {
            consider(m.last_seen + dead_after + Duration::from_millis(1));
        }
        if self.target.is_none() {
            consider(self.started + self.config.cold_start_window);
        }
        if let Some(t) = self.restart_until {
            consider(t);
        }
        if let Some(t) = self.window_deadline() {
            consider(t);
        }
        if let Some((_, t)) = self.removal_times.iter().next() {
            consider(*t + self.config.handoff_timeout);
        }
        if let Some(t) = self.parking.spill_at(&self.config) {
            consider(t);
        }
        match self.strategy_retry.retry_at() {
            None => next,
            // A failing strategy is not asked again before its retry, so
            // nothing but a death verdict (it only clears keys) is due
            // before then.
            Some(r) => Some(self.next_verdict().map_or(r, |v| v.min(r))),
        }
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
