//! `Config::keep_assignment_on_outage`: a worker whose heartbeats fail keeps
//! its partitions (`Degraded`) instead of fencing itself, so while it is cut
//! off the leader may give them to others — delivery becomes at-least-once,
//! as the option's documentation says. What is still promised, and checked
//! (invariant 2): a worker that is not degraded never shares a partition.
//! A degraded worker is not counted from the moment it keeps its partitions
//! until its heartbeats are confirmed again, then for one more heartbeat
//! interval (its assignments watch is reopened and brings the current
//! record) and until the callbacks it queued have returned.

use std::time::Instant;

use super::world::World;

impl World<'_> {
    /// Process `index` entered (`true`) or left `Degraded` in its last
    /// step, in this order; ends its exemption once due. Whether it is
    /// counted anew.
    pub(crate) fn keep_mode(&mut self, index: usize, now: Instant, degraded: &[bool]) -> bool {
        if !self.env.config.keep_assignment_on_outage {
            return false;
        }
        let interval = self.env.config.heartbeat_interval;
        let p = &mut self.procs[index];
        for on in degraded {
            if *on {
                self.report.kept_through_outage += u64::from(!p.keeping);
                p.keeping = true;
                p.kept_until = None;
            } else if p.keeping {
                p.keeping = false;
                p.kept_until = Some(now + interval);
            }
        }
        let busy = p.running().is_some_and(|r| r.busy());
        if p.kept_until.is_some_and(|t| now >= t) && !busy {
            p.kept_until = None;
            return true;
        }
        false
    }
}
