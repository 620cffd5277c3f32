//! What a readiness or liveness probe needs to know about a manager.

use std::time::Duration;

use crate::State;

/// A snapshot of a manager's health, from
/// [`Manager::health`](crate::Manager::health).
///
/// - **Ready** ([`is_ready`](Health::is_ready)): the worker holds an
///   assignment (states `Stable`, `Scaling`, `Rebalancing`, `Emergency`), so
///   it should receive traffic for its partitions. A worker that fenced
///   itself during a NATS outage is not ready; it is again once its
///   heartbeats get through and it holds an assignment.
/// - **Live** ([`is_live`](Health::is_live)): the manager is running and its
///   heartbeat thread is making progress: it finished a KV operation —
///   answered *or failed* — within [`stall_after`](Health::stall_after).
///   A NATS outage does not make a worker un-live (every attempt still
///   fails within `operation_timeout`), so a liveness probe never restarts
///   a fleet because NATS is down; restarting would not bring NATS back.
///   What does fail it: the manager shut down (`stop()`, or its worker ID
///   was taken over), or the thread is wedged, e.g. a callback stuck past
///   `handoff_timeout`, which suspends heartbeats.
///
/// For "are my heartbeats reaching NATS" use
/// [`is_heartbeat_confirmed`](Health::is_heartbeat_confirmed) (alerts and
/// dashboards, not restarts).
///
/// ```no_run
/// # fn probe(manager: &parti::Manager) -> (u16, u16) {
/// let h = manager.health();
/// let ready = if h.is_ready() { 200 } else { 503 };
/// let live = if h.is_live() { 200 } else { 503 };
/// (ready, live)
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The manager's state.
    pub state: State,
    /// Whether this worker leads the group.
    pub is_leader: bool,
    /// This worker's ID.
    pub worker_id: String,
    /// Time since NATS last confirmed one of this worker's heartbeats
    /// (`None` before the first one).
    pub since_last_heartbeat: Option<Duration>,
    /// `Config::heartbeat_ttl`: the bound
    /// [`is_heartbeat_confirmed`](Health::is_heartbeat_confirmed) checks
    /// `since_last_heartbeat` against.
    pub heartbeat_ttl: Duration,
    /// The version of the assignment this worker holds (0: none yet).
    pub assignment_version: u64,
    /// How many partitions this worker holds.
    pub partitions: usize,
    /// How long the worker has been degraded (heartbeats not confirmed),
    /// `None` when it is not.
    pub degraded_since: Option<Duration>,
    /// Time since the heartbeat thread last finished a KV operation,
    /// whatever its outcome (or since the manager started, before the
    /// first).
    pub since_progress: Duration,
    /// The bound [`is_live`](Health::is_live) checks `since_progress`
    /// against: [`Config::stall_after`](crate::Config::stall_after)
    /// (`heartbeat_ttl + heartbeat_interval + operation_timeout`).
    pub stall_after: Duration,
    /// The last time this worker found that the store forgot what a bucket
    /// held — the bucket deleted and recreated, or the server back on an
    /// empty or older store — and which bucket: how long ago, and the
    /// bucket's name. `None` if never. Each such finding is also reported
    /// through `on_error` ([`KvError::Forgot`](crate::store::KvError::Forgot)
    /// or [`KvError::Recreated`](crate::store::KvError::Recreated)) and
    /// counted by `Metrics::store_incident`; see docs/operations.md, "When
    /// the store forgets".
    pub store_fault: Option<(Duration, String)>,
}

impl Health {
    /// Readiness: the worker holds an assignment.
    pub fn is_ready(&self) -> bool {
        self.state.is_assigned()
    }

    /// Liveness: the manager runs and its heartbeat thread made progress
    /// within [`stall_after`](Health::stall_after), reachable NATS or not.
    pub fn is_live(&self) -> bool {
        self.state != State::Shutdown && self.since_progress <= self.stall_after
    }

    /// Whether NATS confirmed a heartbeat within the heartbeat TTL: the
    /// worker is visibly alive to the group. False during an outage.
    pub fn is_heartbeat_confirmed(&self) -> bool {
        self.since_last_heartbeat
            .is_some_and(|d| d <= self.heartbeat_ttl)
    }
}
