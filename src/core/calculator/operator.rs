//! An operator's requests as the calculator takes them: drained workers get
//! no partitions (they stay members, heartbeat and may lead), and a drain,
//! an undrain or a rebalance request makes a rebalance due at once — after
//! a new leader's settling time, but without waiting out a window or the
//! cooldown. The moves themselves go through the ledger like any other, so
//! revoke-before-grant holds and handoffs under way stay on their way.

use super::schedule::Due;
use super::Calculator;
use std::collections::BTreeSet;

/// What the operator asked for.
#[derive(Debug, Default)]
pub(super) struct Operator {
    pub(crate) drained: BTreeSet<String>,
    /// A rebalance was asked for and has not run yet.
    pub(crate) due: bool,
}

impl Calculator {
    /// The workers an operator drained (the whole set, as in KV now).
    pub(crate) fn set_drained(&mut self, drained: BTreeSet<String>) {
        if drained != self.operator.drained {
            self.operator.drained = drained;
            self.operator.due = true;
        }
    }

    /// An operator asked for a rebalance now.
    pub(crate) fn request_rebalance(&mut self) {
        self.operator.due = true;
    }

    /// Whether `worker` was drained by an operator.
    pub(super) fn is_drained(&self, worker: &str) -> bool {
        self.operator.drained.contains(worker)
    }

    /// From when an operator's request is due (`None`: there is none): a
    /// new leader first learns who is really alive (its settling time), as
    /// for any planned rebalance.
    pub(super) fn operator_due(&self) -> Option<Due> {
        let settled = self.settle_until.map_or(Due::Now, Due::At);
        self.operator.due.then_some(settled)
    }
}
