//! Classic consistent hashing over a ring of virtual nodes.

use super::common::{build_placement, keyed_partitions, sorted_workers};
use super::ring::Ring;
use super::AssignmentStrategy;
use crate::{Error, Partition, Placement};

/// Virtual nodes per worker used by [`ConsistentHash::default`].
pub const DEFAULT_VIRTUAL_NODES: u32 = 150;

/// Upper bound on virtual nodes per worker, so a misconfigured value cannot
/// make the ring exhaust memory.
pub const MAX_VIRTUAL_NODES: u32 = 4096;

/// Consistent hashing: each worker owns `k` points on a 64-bit ring and a
/// partition goes to the first point at or after its own position.
///
/// Positions are XXH3-64 values (a partition at `xxh3_64(id)`, virtual node
/// `j` of worker `w` at `xxh3_64_with_seed(w, j + 1)`), so the placement is the
/// same on every platform and release. Stateless: `previous` is ignored, yet a
/// join or leave only moves about `N/n` partitions. Not bounded: loads vary
/// with the ring (at 150 virtual nodes and 10,000 × 200 the busiest worker
/// holds about 1.4 × the average), and weights are ignored. See
/// `docs/strategies.md` for measured numbers.
///
/// ```
/// use parti::strategy::{AssignmentStrategy, ConsistentHash};
/// use parti::{Partition, Placement};
///
/// let workers = vec!["w-0".to_string(), "w-1".to_string()];
/// let parts: Vec<Partition> = (0..100).map(|i| Partition::new(format!("p-{i}"))).collect();
/// let a = ConsistentHash::default().assign(&workers, &parts, &Placement::new())?;
/// let b = ConsistentHash::with_virtual_nodes(150).assign(&workers, &parts, &Placement::new())?;
/// assert_eq!(a, b);
/// assert_eq!(a.values().map(Vec::len).sum::<usize>(), 100);
/// # Ok::<(), parti::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsistentHash {
    virtual_nodes: u32,
}

impl ConsistentHash {
    /// A ring with `k` virtual nodes per worker, clamped to
    /// `1..=`[`MAX_VIRTUAL_NODES`]. More nodes even out loads at the cost of
    /// a bigger ring.
    pub fn with_virtual_nodes(k: u32) -> Self {
        ConsistentHash {
            virtual_nodes: k.clamp(1, MAX_VIRTUAL_NODES),
        }
    }

    /// Virtual nodes per worker.
    pub fn virtual_nodes(&self) -> u32 {
        self.virtual_nodes
    }
}

impl Default for ConsistentHash {
    fn default() -> Self {
        ConsistentHash::with_virtual_nodes(DEFAULT_VIRTUAL_NODES)
    }
}

impl AssignmentStrategy for ConsistentHash {
    fn assign(
        &self,
        workers: &[String],
        partitions: &[Partition],
        _previous: &Placement,
    ) -> Result<Placement, Error> {
        let workers = sorted_workers(workers)?;
        let parts = keyed_partitions(partitions)?;
        let ring = Ring::new(&workers, self.virtual_nodes);
        // Partitions come sorted by hash, so successors only advance.
        let mut successors = ring.successors_of_sorted();
        let owner: Vec<u32> = parts
            .iter()
            .map(|k| ring.owners[successors.next(k.hash)])
            .collect();
        Ok(build_placement(&workers, partitions, &parts, &owner))
    }
}
