//! The fault menu's user and operator actions (`SimConfig::ops_kinds`):
//! graceful leave (`sim::leave`), `parti drain|undrain|rebalance`
//! (`sim::control`), corrupt values written by a third party
//! (`sim::corrupt`); and the checks of what each promises.

use std::time::Instant;

use super::world::World;

/// A graceful leave (`Manager::stop()`).
pub const LEAVE: u8 = 0;
/// An operator's `parti drain|undrain|rebalance`.
pub const CONTROL: u8 = 1;
/// A corrupt value written into a bucket.
pub const CORRUPT: u8 = 2;
/// Every action (see [`SimConfig::ops_kinds`](super::SimConfig::ops_kinds)).
pub const ALL_ACTIONS: &[u8] = &[LEAVE, CONTROL, CORRUPT];

impl World<'_> {
    /// One action drawn from the preset's kinds; whether it disturbs the
    /// group (as a process or link fault does).
    pub(crate) fn user_action(&mut self, now: Instant) -> bool {
        let kinds = self.sim.ops_kinds;
        if kinds.is_empty() {
            return false;
        }
        match kinds[self.rng.index(kinds.len())] {
            LEAVE => {
                let candidates: Vec<usize> = (0..self.procs.len())
                    .filter(|i| self.procs[*i].paused_until.is_none())
                    .filter(|i| {
                        self.procs[*i]
                            .running()
                            .is_some_and(|r| r.leaving.is_none())
                    })
                    .collect();
                if candidates.len() > 2 {
                    let i = candidates[self.rng.index(candidates.len())];
                    self.leave(i, now);
                }
                false
            }
            CONTROL => {
                self.operator(now);
                false
            }
            _ => self.corrupt(now),
        }
    }

    /// The promises of leaves, drains and corrupt values (after each step).
    pub(crate) fn check_operations(&mut self, now: Instant) -> Result<(), String> {
        self.check_leaves(now)?;
        self.check_drains(now)?;
        self.check_corrupt(now)
    }
}
