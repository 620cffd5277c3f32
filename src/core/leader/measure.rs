//! The leader's measurements: unowned partitions and their integral over
//! time (the service level indicator), and how long rebalances take to be
//! carried out. Effects, so that the shell reports them and the simulator
//! may ignore them.

use std::time::{Duration, Instant};

use crate::core::calculator::Phase;

use super::{LeaderEffect, LeaderNode};

/// Unowned partitions are reported at least this often while some are.
const EVERY: Duration = Duration::from_secs(1);

/// A measurement for the shell to record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Measure {
    /// Partitions unowned now, and the partition-seconds unowned since the
    /// previous report.
    Unowned {
        /// Partitions nobody can be working on now.
        count: usize,
        /// Partition-seconds since the previous report.
        partition_seconds: f64,
    },
    /// A rebalance was carried out, this long after it was decided.
    Handoff(Duration),
}

/// What the measurements remember between ticks.
#[derive(Debug, Default)]
pub(super) struct Meter {
    /// Unowned count last reported, and since when.
    unowned: Option<(usize, Instant)>,
    /// When the rebalance under way was decided.
    rebalanced_at: Option<Instant>,
}

impl LeaderNode {
    /// After a tick: report the unowned count when it changed or a report
    /// is due.
    pub(super) fn measure_unowned(&mut self, now: Instant) {
        let Some(calc) = &self.calc else { return };
        let count = calc.unowned(now);
        let due = match self.meter.unowned {
            None => true,
            Some((last, since)) => last != count || (last > 0 && now >= since + EVERY),
        };
        if !due {
            return;
        }
        let partition_seconds = self.meter.unowned.map_or(0.0, |(last, since)| {
            last as f64 * now.saturating_duration_since(since).as_secs_f64()
        });
        self.meter.unowned = Some((count, now));
        self.effects
            .push_back(LeaderEffect::Measured(Measure::Unowned {
                count,
                partition_seconds,
            }));
    }

    /// A rebalance was decided now.
    pub(super) fn measure_rebalanced(&mut self, now: Instant) {
        self.meter.rebalanced_at.get_or_insert(now);
    }

    /// The phase changed to `phase`: a rebalance under way is carried out
    /// once the phase is neither `Rebalancing` nor `Emergency`.
    pub(super) fn measure_phase(&mut self, now: Instant, phase: Phase) {
        if matches!(phase, Phase::Rebalancing | Phase::Emergency) {
            return;
        }
        if let Some(t) = self.meter.rebalanced_at.take() {
            self.effects
                .push_back(LeaderEffect::Measured(Measure::Handoff(
                    now.saturating_duration_since(t),
                )));
        }
    }
}
