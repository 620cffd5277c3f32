//! A hash ring of virtual nodes, shared by the ring-based strategies.

use super::common::vnode_hash;

/// Virtual nodes of `workers` sorted by position. `owners[i]` is the index (in
/// the worker slice the ring was built from) of the worker at `points[i]`.
pub(crate) struct Ring {
    pub(crate) points: Vec<u64>,
    pub(crate) owners: Vec<u32>,
}

impl Ring {
    /// Builds the ring with `vnodes` points per worker.
    pub(crate) fn new(workers: &[&str], vnodes: u32) -> Ring {
        let mut nodes: Vec<(u64, u32)> = Vec::with_capacity(workers.len() * vnodes as usize);
        for (w, id) in workers.iter().enumerate() {
            for v in 0..vnodes {
                nodes.push((vnode_hash(id, v), w as u32));
            }
        }
        // Ties (equal positions) are broken by worker index, which follows
        // worker id order: still platform independent.
        nodes.sort_unstable();
        let (points, owners) = nodes.into_iter().unzip();
        Ring { points, owners }
    }

    /// Number of virtual nodes.
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    /// Index of the first virtual node at or after `hash`, wrapping to 0.
    pub(crate) fn successor(&self, hash: u64) -> usize {
        let i = self.points.partition_point(|&p| p < hash);
        if i == self.points.len() {
            0
        } else {
            i
        }
    }
}
