//! Placement strategies: which worker gets which partitions.
//!
//! - [`BoundedLoad`] (the default): sticky and balanced, near-minimal movement.
//! - [`ConsistentHash`]: stateless ring, small movement, unbounded loads.
//! - [`RoundRobin`]: perfectly balanced by count, not sticky.
//!
//! [`moved`] and [`minimum_moves`] measure a rebalance. `docs/strategies.md`
//! explains each strategy with measured numbers.

mod address;
mod bounded_load;
mod budget;
mod common;
mod consistent_hash;
mod constraints;
mod default_fleet;
mod fill;
mod fleet;
mod interned;
mod metrics;
mod place;
mod plan;
mod previous;
mod radix;
mod ring;
mod round_robin;
mod shares;
mod shed;
mod skip_list;
mod worker;

pub use bounded_load::BoundedLoad;
pub use consistent_hash::{ConsistentHash, DEFAULT_VIRTUAL_NODES, MAX_VIRTUAL_NODES};
pub(crate) use constraints::Constraints;
pub(crate) use interned::{in_slot, store, Stored};
pub use metrics::{minimum_moves, moved};
pub use round_robin::RoundRobin;
pub(crate) use worker::check_descriptor;
pub use worker::WorkerInfo;

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

    /// Like [`assign`](AssignmentStrategy::assign), for workers that carry
    /// labels and capacities and partitions that carry label constraints
    /// ([`Partition::require_label`], [`Partition::prefer_label`]).
    ///
    /// A partition no worker may own (no worker carries its required labels)
    /// is absent from the result; every other partition is placed exactly
    /// once, on a worker carrying its required labels. The same errors as
    /// `assign`.
    ///
    /// The default implementation, for strategies that ignore labels and
    /// capacities, still never breaks a hard constraint: it runs `assign`
    /// over all workers for the partitions without required labels and, for
    /// each set of required labels, over the workers that carry them.
    /// [`BoundedLoad`] overrides it to balance in proportion to capacity
    /// across all partitions, honor preferences and the move budget.
    ///
    /// ```
    /// use parti::strategy::{AssignmentStrategy, BoundedLoad, WorkerInfo};
    /// use parti::{Partition, Placement};
    ///
    /// let workers = vec![
    ///     WorkerInfo::new("worker-0").label("zone", "a").capacity(2),
    ///     WorkerInfo::new("worker-1").label("zone", "b"),
    /// ];
    /// let partitions = vec![
    ///     Partition::new("p0").require_label("pool", "vip"),
    ///     Partition::new("p1").prefer_label("zone", "a"),
    /// ];
    /// let placed = BoundedLoad::default().assign_workers(&workers, &partitions, &Placement::new())?;
    /// // Nobody is in pool vip: p0 is parked. p1 goes home to zone a.
    /// assert_eq!(placed["worker-0"], vec![Partition::new("p1").prefer_label("zone", "a")]);
    /// assert!(placed["worker-1"].is_empty());
    /// # Ok::<(), parti::Error>(())
    /// ```
    fn assign_workers(
        &self,
        workers: &[WorkerInfo],
        partitions: &[Partition],
        previous: &Placement,
    ) -> Result<Placement, Error> {
        default_fleet::assign_by_class(self, workers, partitions, previous)
    }
}

/// The strategy a manager uses when none is given.
pub(crate) fn default_strategy() -> impl AssignmentStrategy {
    BoundedLoad::default()
}
