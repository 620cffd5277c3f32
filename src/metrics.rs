//! Hooks for exporting what a manager does to a metrics system.

use std::time::Duration;

use crate::{Error, RebalanceKind, State};

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

    /// Partitions nobody can be working on now, as the leader sees it: in
    /// no published assignment (waiting for a window, a handoff or an
    /// emergency), or published to a worker silent for longer than
    /// `heartbeat_ttl` (it has fenced itself or died). Only the leader
    /// calls this, when the count changes and about once a second.
    fn partitions_unowned(&self, count: usize) {
        let _ = count;
    }

    /// `seconds` more partition-seconds without an owner (the count of
    /// [`partitions_unowned`](Self::partitions_unowned) integrated over
    /// time): the service level indicator. Only the leader calls this, with
    /// increments, about once a second while some partition is unowned.
    fn unowned_partition_seconds(&self, seconds: f64) {
        let _ = seconds;
    }

    /// A rebalance was carried out: from the leader's decision until every
    /// partition was granted to its new owner and the writes confirmed
    /// (revocations acknowledged, callbacks returned). A rebalance decided
    /// while another is under way extends it. Only the leader calls this.
    fn handoff_latency(&self, latency: Duration) {
        let _ = latency;
    }

    /// This worker lost the store: heartbeats went unconfirmed until its
    /// fencing deadline and it entered `Degraded` (once per outage).
    fn store_incident(&self) {}

    /// An error was passed to `on_error` (and logged as a warning);
    /// `kind` names its variant in snake case (`degraded`,
    /// `handoff_timeout`, `corrupt`, `kv`, …; see [`alert_kind`]).
    fn alert(&self, kind: &'static str) {
        let _ = kind;
    }
}

/// The label [`Metrics::alert`] gets for `error`: its variant in snake case.
///
/// ```
/// use std::time::Duration;
/// let e = parti::Error::Degraded { for_: Duration::from_secs(3) };
/// assert_eq!(parti::metrics::alert_kind(&e), "degraded");
/// ```
pub fn alert_kind(error: &Error) -> &'static str {
    match error {
        Error::InvalidConfig { .. } => "invalid_config",
        Error::InvalidName { .. } => "invalid_name",
        Error::NoWorkers => "no_workers",
        Error::DuplicatePartition { .. } => "duplicate_partition",
        Error::InvalidPartition { .. } => "invalid_partition",
        Error::Plugin { .. } => "plugin",
        Error::PluginPanicked { .. } => "plugin_panicked",
        Error::StartupTimeout { .. } => "startup_timeout",
        Error::WaitTimeout { .. } => "wait_timeout",
        Error::NoFreeWorkerId { .. } => "no_free_worker_id",
        Error::Corrupt { .. } => "corrupt",
        Error::RecordTooLarge { .. } => "record_too_large",
        Error::CallbackPanicked { .. } => "callback_panicked",
        Error::InvalidTransition { .. } => "invalid_transition",
        Error::Degraded { .. } => "degraded",
        Error::HandoffTimeout { .. } => "handoff_timeout",
        Error::WorkerIdLost { .. } => "worker_id_lost",
        Error::ShutdownTimeout { .. } => "shutdown_timeout",
        Error::Stopped => "stopped",
        Error::Connect { .. } => "connect",
        Error::PermissionDenied { .. } => "permission_denied",
        Error::Subscription { .. } => "subscription",
        Error::Kv(_) => "kv",
    }
}

/// The default: records nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {}
