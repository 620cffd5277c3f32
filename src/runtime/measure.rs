//! The leader node's measurements, handed to the user's [`Metrics`].

use crate::core::leader::Measure;
use crate::metrics::Metrics;

/// Records `m` in `metrics`.
pub(crate) fn record(metrics: &dyn Metrics, m: Measure) {
    match m {
        Measure::Unowned {
            count,
            partition_seconds,
        } => {
            metrics.partitions_unowned(count);
            if partition_seconds > 0.0 {
                metrics.unowned_partition_seconds(partition_seconds);
            }
        }
        Measure::Handoff(latency) => metrics.handoff_latency(latency),
    }
}
