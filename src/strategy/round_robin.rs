//! Round robin: deal partitions in id order over workers in id order.

use super::common::{build_placement, keyed_partitions, sorted_workers};
use super::AssignmentStrategy;
use crate::{Error, Partition, Placement};

/// Deals partitions, sorted by id, over workers, sorted by id: every worker
/// gets ⌊N/n⌋ or ⌈N/n⌉ partitions.
///
/// Perfectly balanced by count and deterministic, but neither sticky nor
/// weight-aware: adding or removing one worker shifts almost every partition.
/// Use it when partitions are cheap to move.
///
/// ```
/// use parti::strategy::{AssignmentStrategy, RoundRobin};
/// use parti::{Partition, Placement};
///
/// let workers = vec!["w-0".to_string(), "w-1".to_string()];
/// let parts: Vec<Partition> = ["a", "b", "c"].into_iter().map(Partition::new).collect();
/// let placement = RoundRobin::default().assign(&workers, &parts, &Placement::new())?;
/// assert_eq!(placement["w-0"], vec![Partition::new("a"), Partition::new("c")]);
/// assert_eq!(placement["w-1"], vec![Partition::new("b")]);
/// # Ok::<(), parti::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundRobin;

impl AssignmentStrategy for RoundRobin {
    fn assign(
        &self,
        workers: &[String],
        partitions: &[Partition],
        _previous: &Placement,
    ) -> Result<Placement, Error> {
        let workers = sorted_workers(workers)?;
        let mut parts = keyed_partitions(partitions)?;
        parts.sort_unstable_by(|a, b| {
            partitions[a.index as usize]
                .id()
                .cmp(partitions[b.index as usize].id())
        });
        let n = workers.len();
        let owner: Vec<u32> = (0..parts.len()).map(|i| (i % n) as u32).collect();
        Ok(build_placement(&workers, partitions, &parts, &owner))
    }
}
