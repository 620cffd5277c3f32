//! Placing the partitions that have no owner.

use super::common::NO_OWNER;
use super::fleet::Fleet;
use super::plan::Plan;
use super::skip_list::SkipList;

/// What to do with partitions left once every worker reached its limit.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenAllFull {
    /// Leave them unowned for a later pass.
    Stop,
    /// Put each on the least loaded worker. Unreachable while the limits sum
    /// to at least the total weight; it makes a bug cost balance, not a panic.
    LeastLoaded,
}

impl Plan {
    /// Gives every unowned partition, in canonical order, to the first worker
    /// clockwise from its hash whose load is below `limit[w]` (and, with
    /// label constraints, that may own it: see `fill_fleet`).
    pub(crate) fn fill(&mut self, limit: &[u64], when_full: WhenAllFull, fleet: &Fleet) {
        if !self.owner.contains(&NO_OWNER) {
            return;
        }
        if fleet.constrained {
            return self.fill_fleet(limit, when_full, fleet);
        }
        let takes: Vec<bool> = (0..self.workers())
            .map(|w| self.load[w] < limit[w])
            .collect();
        let mut open = takes.iter().filter(|&&t| t).count();
        let owners = &self.ring.owners;
        let mut skip = SkipList::with_open(owners.len(), |pos| takes[owners[pos] as usize]);
        let mut successors = self.ring.successors_of_sorted();
        for i in 0..self.parts.len() {
            if self.owner[i] != NO_OWNER {
                continue;
            }
            let w = if open > 0 {
                // Partitions come in hash order, so successors only advance.
                let pos = skip.next_open(successors.next(self.parts[i].hash));
                self.ring.owners[pos] as usize
            } else if when_full == WhenAllFull::Stop {
                return;
            } else {
                self.least_loaded()
            };
            let was_open = self.load[w] < limit[w];
            self.owner[i] = w as u32;
            self.load[w] += self.weights[i];
            if was_open && self.load[w] >= limit[w] {
                skip.close(self.positions_of(w));
                open -= 1;
            }
        }
    }

    fn least_loaded(&self) -> usize {
        (0..self.workers())
            .min_by_key(|&w| (self.load[w], w))
            .unwrap_or(0)
    }
}
