//! Hooks for exporting what a manager does to a metrics system.

use std::time::Duration;

use crate::{RebalanceKind, State};

/// Receives a manager's measurements. Register one with
/// [`ManagerBuilder::metrics`](crate::ManagerBuilder::metrics); every method
/// has a no-op default, so implement only what you export.
///
/// Methods are called from the manager's own threads (heartbeat, election,
/// leader) while no lock of the manager is held. Keep them cheap and
/// non-blocking (update an atomic or a metrics-crate counter): a slow call
/// delays heartbeats.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use parti::metrics::Metrics;
/// use parti::RebalanceKind;
///
/// #[derive(Default)]
/// struct Counters { rebalances: AtomicU64 }
///
/// impl Metrics for Counters {
///     fn rebalance(&self, _kind: RebalanceKind) {
///         self.rebalances.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// let counters = Counters::default();
/// counters.rebalance(RebalanceKind::PlannedScale);
/// assert_eq!(counters.rebalances.load(Ordering::Relaxed), 1);
/// ```
pub trait Metrics: Send + Sync {
    /// The leader computed a new target assignment of this kind (only the
    /// leader calls this).
    fn rebalance(&self, kind: RebalanceKind) {
        let _ = kind;
    }

    /// How many partitions are parked: no live worker carries their
    /// required labels, so nobody owns them (only the leader calls this,
    /// with every publication).
    fn parked_partitions(&self, count: usize) {
        let _ = count;
    }

    /// This worker installed an assignment of this version.
    fn assignment_version(&self, version: u64) {
        let _ = version;
    }

    /// How many partitions this worker owns now.
    fn partitions_owned(&self, count: usize) {
        let _ = count;
    }

    /// This worker became (`true`) or stopped being the leader.
    fn leader(&self, is_leader: bool) {
        let _ = is_leader;
    }

    /// The manager's state changed.
    fn state(&self, state: State) {
        let _ = state;
    }

    /// A heartbeat write failed or its outcome is unknown.
    fn heartbeat_failure(&self) {}

    /// A KV operation (`"get"`, `"put"`, `"create"`, `"update"`, `"delete"`,
    /// `"keys"`) on `bucket` failed for another reason than a lost
    /// compare-and-set (which is normal coordination, not a failure).
    fn kv_failure(&self, bucket: &str, op: &'static str) {
        let _ = (bucket, op);
    }

    /// A KV operation on `bucket` took `latency` (successful or not).
    fn kv_latency(&self, bucket: &str, op: &'static str, latency: Duration) {
        let _ = (bucket, op, latency);
    }
}

/// The default: records nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {}
