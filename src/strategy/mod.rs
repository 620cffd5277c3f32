//! Placement strategies: which worker gets which partitions.

use crate::{Error, Partition, Placement};

/// Computes a placement of `partitions` over `workers`.
pub trait AssignmentStrategy: Send + Sync {
    /// `previous` is the placement currently in force (empty on cold start);
    /// sticky strategies use it to move as little as possible.
    ///
    /// Every partition must be placed exactly once, on one of `workers`, and
    /// the result must not depend on the order of `workers` or `partitions`.
    fn assign(
        &self,
        workers: &[String],
        partitions: &[Partition],
        previous: &Placement,
    ) -> Result<Placement, Error>;
}
