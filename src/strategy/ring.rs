//! A hash ring of virtual nodes, shared by the ring-based strategies.

use super::common::vnode_hash;
use super::radix::sort_by_u64;

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
        // Stable, and nodes are pushed in worker order: ties stay ordered.
        sort_by_u64(&mut nodes, |n| n.0);
        let (points, owners) = nodes.into_iter().unzip();
        Ring { points, owners }
    }

    /// Number of virtual nodes.
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    /// Successors of ascending hashes, in one merge-like pass instead of a
    /// binary search per hash.
    pub(crate) fn successors_of_sorted(&self) -> SortedSuccessors<'_> {
        SortedSuccessors {
            points: &self.points,
            cursor: 0,
        }
    }
}

/// The points of some workers of a [`Ring`], in ring order.
#[derive(Default)]
pub(crate) struct SubRing {
    pub(crate) points: Vec<u64>,
    pub(crate) owners: Vec<u32>,
}

impl SubRing {
    /// Makes this the points of `ring` owned by the workers `keep` selects,
    /// reusing its memory.
    pub(crate) fn keep(&mut self, ring: &Ring, keep: impl Fn(usize) -> bool) {
        // Every point is written and the cursor advances only past the kept
        // ones: a pass keeps a third or a tenth of the points in no pattern,
        // and a branch per point mispredicted often enough to be most of
        // the labelled fill's time.
        let n = ring.points.len();
        self.points.resize(n, 0);
        self.owners.resize(n, 0);
        let mut kept = 0;
        for (&p, &w) in ring.points.iter().zip(&ring.owners) {
            // In bounds: `kept` never passes the point being read.
            self.points[kept] = p;
            self.owners[kept] = w;
            kept += usize::from(keep(w as usize));
        }
        self.points.truncate(kept);
        self.owners.truncate(kept);
    }
}

/// Yields [`Ring::successor`] for a non-decreasing sequence of hashes.
pub(crate) struct SortedSuccessors<'a> {
    points: &'a [u64],
    cursor: usize,
}

impl<'a> SortedSuccessors<'a> {
    /// Successors on the ring of sorted `points`.
    pub(crate) fn over(points: &'a [u64]) -> Self {
        SortedSuccessors { points, cursor: 0 }
    }

    /// Same as [`Ring::successor`], provided `hash` is not smaller than the
    /// one asked before.
    pub(crate) fn next(&mut self, hash: u64) -> usize {
        while self.cursor < self.points.len() && self.points[self.cursor] < hash {
            self.cursor += 1;
        }
        if self.cursor == self.points.len() {
            0
        } else {
            self.cursor
        }
    }
}
