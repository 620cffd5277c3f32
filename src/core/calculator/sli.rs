//! What the service level indicator counts: partitions nobody can be
//! working on now, as far as the leader knows.

use std::time::Instant;

use super::Calculator;

impl Calculator {
    /// Partitions of the source in no published key, or in the key of a
    /// worker silent for longer than `heartbeat_ttl` (by then it has fenced
    /// itself, or died). A granted partition counts as owned at once,
    /// before its callback ran.
    pub(crate) fn unowned(&self, now: Instant) -> usize {
        let ttl = self.config.heartbeat_ttl;
        let owned: usize = self
            .ledger
            .counts()
            .into_iter()
            .filter(|(w, _)| {
                self.members
                    .get(w)
                    .is_some_and(|m| now.saturating_duration_since(m.last_seen) <= ttl)
            })
            .map(|(_, n)| n)
            .sum();
        self.partitions.len().saturating_sub(owned)
    }
}
