//! Placement strategies: which worker gets which partitions.
//!
//! - [`BoundedLoad`] (the default): sticky and balanced, near-minimal movement.
//! - [`ConsistentHash`]: stateless ring, small movement, unbounded loads.
//! - [`RoundRobin`]: perfectly balanced by count, not sticky.
//!
//! [`moved`] and [`minimum_moves`] measure a rebalance. `docs/strategies.md`
//! explains each strategy with measured numbers.

mod bounded_load;
mod common;
mod consistent_hash;
mod fill;
mod metrics;
mod plan;
mod ring;
mod round_robin;
mod shed;
mod skip_list;

pub use bounded_load::BoundedLoad;
pub use consistent_hash::{ConsistentHash, DEFAULT_VIRTUAL_NODES, MAX_VIRTUAL_NODES};
pub use metrics::{minimum_moves, moved};
pub use round_robin::RoundRobin;

use crate::{Error, Partition, Placement};

/// Computes a placement of `partitions` over `workers`.
///
/// Every implementation in this module returns an entry for every distinct
/// worker (possibly with no partitions), lists each worker's partitions sorted
/// by id, ignores repeated worker ids, and fails with [`Error::NoWorkers`]
/// when `workers` is empty, [`Error::DuplicatePartition`] when two partitions
/// share an id, and [`Error::InvalidPartition`] for an empty partition or
/// worker id.
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

/// The strategy a manager uses when none is given.
pub(crate) fn default_strategy() -> impl AssignmentStrategy {
    BoundedLoad::default()
}
