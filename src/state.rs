//! Manager states and the table of allowed transitions.

use std::fmt;

/// The lifecycle state of a [`Manager`](crate::Manager).
///
/// Allowed transitions (anything else is a bug, reported and not applied):
///
/// | from | to |
/// |---|---|
/// | `Init` | `ClaimingId`, `Shutdown` |
/// | `ClaimingId` | `Election`, `Shutdown` |
/// | `Election` | `WaitingAssignment`, `Stable`, `Scaling`, `Rebalancing`, `Emergency`, `Degraded`, `Shutdown` |
/// | `WaitingAssignment` | `Stable`, `Scaling`, `Rebalancing`, `Emergency`, `Degraded`, `Shutdown` |
/// | `Stable` | `Scaling`, `Rebalancing`, `Emergency`, `Degraded`, `Shutdown` |
/// | `Scaling` | `Stable`, `Rebalancing`, `Emergency`, `Degraded`, `Shutdown` |
/// | `Rebalancing` | `Stable`, `Scaling`, `Emergency`, `Degraded`, `Shutdown` |
/// | `Emergency` | `Stable`, `Scaling`, `Rebalancing`, `Degraded`, `Shutdown` |
/// | `Degraded` | `WaitingAssignment`, `Stable`, `Scaling`, `Rebalancing`, `Emergency`, `Shutdown` |
/// | `Shutdown` | (none) |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Created, not started.
    Init,
    /// Claiming a stable worker ID.
    ClaimingId,
    /// Taking part in the leader election.
    Election,
    /// Waiting for the first assignment.
    WaitingAssignment,
    /// Holding an assignment; nothing pending.
    Stable,
    /// A planned membership change is waiting out its stabilization window.
    Scaling,
    /// A new assignment is being handed over.
    Rebalancing,
    /// A worker died; its partitions are being reassigned at once.
    Emergency,
    /// NATS is unreachable; see `Config` for what happens to the assignment.
    Degraded,
    /// Stopped, or stopping.
    Shutdown,
}

impl State {
    /// Whether the table above allows `self -> to`.
    pub fn can_transition_to(self, to: State) -> bool {
        use State::*;
        if self == to {
            return false;
        }
        match self {
            Init => matches!(to, ClaimingId | Shutdown),
            ClaimingId => matches!(to, Election | Shutdown),
            // The first assignment can arrive before this worker has seen the
            // lease (a busy group answers faster than a loaded election
            // thread), so Election may lead straight to an assigned state.
            Election => !matches!(to, Init | ClaimingId),
            WaitingAssignment | Stable | Scaling | Rebalancing | Emergency => {
                !matches!(to, Init | ClaimingId | Election | WaitingAssignment)
            }
            Degraded => !matches!(to, Init | ClaimingId | Election),
            Shutdown => false,
        }
    }

    /// Whether a worker in this state holds an assignment.
    ///
    /// ```
    /// use parti::State;
    ///
    /// assert!(State::Rebalancing.is_assigned());
    /// assert!(!State::Degraded.is_assigned());
    /// ```
    pub fn is_assigned(self) -> bool {
        matches!(
            self,
            State::Stable | State::Scaling | State::Rebalancing | State::Emergency
        )
    }

    /// All states, in declaration order.
    pub const ALL: [State; 10] = [
        State::Init,
        State::ClaimingId,
        State::Election,
        State::WaitingAssignment,
        State::Stable,
        State::Scaling,
        State::Rebalancing,
        State::Emergency,
        State::Degraded,
        State::Shutdown,
    ];
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::State::*;
    use super::*;

    #[test]
    fn the_table_allows_the_documented_paths_only() {
        let startup = [Init, ClaimingId, Election, WaitingAssignment, Stable];
        assert!(startup.windows(2).all(|w| w[0].can_transition_to(w[1])));
        assert!(
            Election.can_transition_to(Stable),
            "an assignment may beat the election"
        );
        assert!(
            Stable.can_transition_to(Degraded) && Degraded.can_transition_to(WaitingAssignment)
        );
        assert!(!Stable.can_transition_to(WaitingAssignment));
        assert!(!Stable.can_transition_to(Election));
        assert!(!Init.can_transition_to(Stable));
        for s in State::ALL {
            assert!(!Shutdown.can_transition_to(s));
            assert!(!s.can_transition_to(s));
            assert!(s == Shutdown || s.can_transition_to(Shutdown));
        }
    }
}
