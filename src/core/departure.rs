//! How a manager leaves the group: the order of `Manager::stop()`'s steps,
//! shared by the runtime (`runtime/start.rs`, which blocks on each) and the
//! simulator (`sim/leave.rs`, which steps them). A worker with partitions
//! asks its heartbeat node to leave and waits for it to drain until the
//! shutdown deadline less a reserve, then tells it to quit (one without
//! partitions quits at once); the election then releases the lease, and
//! the callbacks are waited for until the deadline. What is released and
//! when the key goes is the nodes' decision, not this one's.

use std::time::Instant;

use crate::core::heartbeat::HeartbeatInput;
use crate::Config;

/// A stop under way: its deadlines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Departure {
    deadline: Instant,
    drain_until: Option<Instant>,
}

impl Departure {
    /// `stop()` called at `now` on a worker that holds an assignment it can
    /// hand over (`assigned`) or not; the departure and the heartbeat
    /// node's first input.
    pub fn begin(config: &Config, now: Instant, assigned: bool) -> (Departure, HeartbeatInput) {
        let deadline = now + config.shutdown_timeout;
        // Kept for releasing locally, deleting the key and the lease, each
        // bounded by the operation timeout.
        let reserve = (config.operation_timeout * 3).min(config.shutdown_timeout / 2);
        let drain_until = assigned.then(|| deadline - reserve);
        let first = if assigned {
            HeartbeatInput::Leave
        } else {
            HeartbeatInput::Quit
        };
        (
            Departure {
                deadline,
                drain_until,
            },
            first,
        )
    }

    /// Until when the heartbeat node may drain before it is told to quit;
    /// `None` when it was told to quit at once.
    pub fn drain_until(&self) -> Option<Instant> {
        self.drain_until
    }

    /// When the whole stop must be over.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_assigned_worker_drains_first_and_keeps_a_reserve() {
        let c = Config::default();
        let t0 = Instant::now();
        let (d, first) = Departure::begin(&c, t0, true);
        assert!(matches!(first, HeartbeatInput::Leave));
        assert_eq!(d.deadline(), t0 + c.shutdown_timeout);
        let reserve = (c.operation_timeout * 3).min(c.shutdown_timeout / 2);
        assert_eq!(d.drain_until(), Some(d.deadline() - reserve));
        assert!(reserve > Duration::ZERO);
    }

    #[test]
    fn a_worker_without_partitions_quits_at_once() {
        let (d, first) = Departure::begin(&Config::default(), Instant::now(), false);
        assert!(matches!(first, HeartbeatInput::Quit));
        assert_eq!(d.drain_until(), None);
    }
}
