//! What a readiness or liveness probe needs to know about a manager.

use std::time::Duration;

use crate::State;

/// A snapshot of a manager's health, from
/// [`Manager::health`](crate::Manager::health).
///
/// - **Ready** ([`is_ready`](Health::is_ready)): the worker holds an
///   assignment (states `Stable`, `Scaling`, `Rebalancing`, `Emergency`), so
///   it should receive traffic for its partitions.
/// - **Live** ([`is_live`](Health::is_live)): the worker's last heartbeat
///   was confirmed by NATS within the heartbeat TTL and the manager is not
///   shut down. A worker that is not live has (or soon will have) lost its
///   partitions to others; restarting it is reasonable once it has been
///   degraded for long (see [`degraded_since`](Health::degraded_since)).
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
    /// `Config::heartbeat_ttl`: the bound [`is_live`](Health::is_live)
    /// checks `since_last_heartbeat` against.
    pub heartbeat_ttl: Duration,
    /// The version of the assignment this worker holds (0: none yet).
    pub assignment_version: u64,
    /// How many partitions this worker holds.
    pub partitions: usize,
    /// How long the worker has been degraded (heartbeats not confirmed),
    /// `None` when it is not.
    pub degraded_since: Option<Duration>,
}

impl Health {
    /// Readiness: the worker holds an assignment.
    pub fn is_ready(&self) -> bool {
        self.state.is_assigned()
    }

    /// Liveness: a heartbeat was confirmed within the heartbeat TTL and the
    /// manager is running.
    pub fn is_live(&self) -> bool {
        self.state != State::Shutdown
            && self
                .since_last_heartbeat
                .is_some_and(|d| d <= self.heartbeat_ttl)
    }
}
