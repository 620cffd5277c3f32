//! The working state of one BoundedLoad `assign` call: who owns what so far,
//! loads, and the ring used to rank workers for each partition.

use super::common::{Keyed, NO_OWNER};
use super::fleet::{Fleet, FREE, PARKED};
use super::previous::previous_owners;
use super::ring::Ring;
use crate::{Partition, Placement};

pub(crate) struct Plan {
    /// Partitions in canonical `(hash, id)` order.
    pub(crate) parts: Vec<Keyed>,
    /// Effective weight of `parts[i]`.
    pub(crate) weights: Vec<u64>,
    /// Worker index owning `parts[i]`, or `NO_OWNER`.
    pub(crate) owner: Vec<u32>,
    /// Total weight each worker currently owns.
    pub(crate) load: Vec<u64>,
    pub(crate) ring: Ring,
    /// Workers given a partition while at their limit because no eligible
    /// worker had room (only with hard constraints): the repair pass starts
    /// from them.
    pub(crate) overflowed: Vec<bool>,
    /// Each worker's virtual-node hashes, sorted, `vnodes` per worker in
    /// worker order.
    points: Vec<u64>,
    /// Ring index of each worker's virtual nodes, same layout as `points`.
    positions: Vec<u32>,
    vnodes: usize,
}

impl Plan {
    /// Starts from `previous`: each partition owned by the first live worker
    /// (in id order) that listed it; dead workers and unknown partitions are
    /// ignored.
    pub(crate) fn new(
        workers: &[&str],
        input: &[Partition],
        parts: Vec<Keyed>,
        previous: &Placement,
        vnodes: u32,
    ) -> Self {
        let weights: Vec<u64> = parts.iter().map(|k| u64::from(k.weight)).collect();
        let owner = previous_owners(workers, input, &parts, previous);
        let mut load = vec![0u64; workers.len()];
        for (&o, &w) in owner.iter().zip(&weights) {
            if o != NO_OWNER {
                load[o as usize] += w;
            }
        }
        let ring = Ring::new(workers, vnodes);
        let vnodes = vnodes as usize;
        let mut points = vec![0u64; ring.len()];
        let mut positions = vec![0u32; ring.len()];
        let mut filled = vec![0usize; workers.len()];
        // The ring is sorted, so each worker's slice comes out sorted too.
        for (pos, (&p, &w)) in ring.points.iter().zip(&ring.owners).enumerate() {
            let w = w as usize;
            points[w * vnodes + filled[w]] = p;
            positions[w * vnodes + filled[w]] = pos as u32;
            filled[w] += 1;
        }
        Plan {
            parts,
            weights,
            owner,
            load,
            ring,
            overflowed: vec![false; workers.len()],
            points,
            positions,
            vnodes,
        }
    }

    pub(crate) fn workers(&self) -> usize {
        self.load.len()
    }

    /// Ring indexes of worker `w`'s virtual nodes.
    pub(crate) fn positions_of(&self, w: usize) -> &[u32] {
        &self.positions[w * self.vnodes..(w + 1) * self.vnodes]
    }

    /// Sorted ring points of the workers for which `pick` holds.
    pub(crate) fn points_where(&self, pick: impl Fn(usize) -> bool) -> Vec<u64> {
        self.ring
            .points
            .iter()
            .zip(&self.ring.owners)
            .filter(|&(_, &w)| pick(w as usize))
            .map(|(&p, _)| p)
            .collect()
    }

    /// Partitions of the workers marked in `from`, as `(worker, priority,
    /// partition)` sorted by worker and then in the order they should be
    /// shed: first those much closer on the ring to one of `receivers` than
    /// to their owner, i.e. those a receiver would own had it been there all
    /// along. `bonus(i)` is added to partition `i`'s priority (larger: shed
    /// later); label constraints use it to rank whole kinds of partitions.
    pub(crate) fn shed_order(
        &self,
        from: &[bool],
        receivers: &[u64],
        bonus: impl Fn(usize) -> i128,
    ) -> Vec<(u32, i128, u32)> {
        let mut order = Vec::new();
        for (i, (&o, k)) in self.owner.iter().zip(&self.parts).enumerate() {
            if o == NO_OWNER || !from[o as usize] {
                continue;
            }
            let w = o as usize;
            let own = &self.points[w * self.vnodes..(w + 1) * self.vnodes];
            let priority = i128::from(distance_to_next(receivers, k.hash))
                - i128::from(distance_to_next(own, k.hash))
                + bonus(i);
            order.push((o, priority, i as u32));
        }
        // Group by worker (stable counting sort), then order each group:
        // many small sorts instead of one over every partition.
        let mut start = vec![0usize; self.workers() + 1];
        for e in &order {
            start[e.0 as usize + 1] += 1;
        }
        for w in 0..self.workers() {
            start[w + 1] += start[w];
        }
        let mut grouped = vec![(0u32, 0i128, 0u32); order.len()];
        let mut next = start.clone();
        for &e in &order {
            grouped[next[e.0 as usize]] = e;
            next[e.0 as usize] += 1;
        }
        for w in 0..self.workers() {
            grouped[start[w]..start[w + 1]]
                .sort_unstable_by(|a, b| a.1.cmp(&b.1).then(a.2.cmp(&b.2)));
        }
        grouped
    }

    /// Takes partition `i` away from its owner.
    pub(crate) fn release(&mut self, i: usize) {
        let o = self.owner[i];
        if o != NO_OWNER {
            self.load[o as usize] -= self.weights[i];
            self.owner[i] = NO_OWNER;
        }
    }

    /// Releases every partition whose previous owner may not own it (a hard
    /// constraint changed, or no live worker qualifies).
    pub(crate) fn release_ineligible(&mut self, fleet: &Fleet) {
        for i in 0..self.parts.len() {
            let o = self.owner[i];
            if o != NO_OWNER && !fleet.eligible(i, o as usize) {
                self.release(i);
            }
        }
    }

    /// Each worker's load plus the unowned partitions only it may own: what
    /// it will carry whatever the caps, so spare cap units go where they
    /// save a move.
    pub(crate) fn committed(&self, fleet: &Fleet) -> Vec<u64> {
        let mut load = self.load.clone();
        if fleet.class_of.is_empty() {
            return load;
        }
        for (i, &o) in self.owner.iter().enumerate() {
            let c = fleet.class(i);
            if o == NO_OWNER && c != PARKED {
                if let [only] = fleet.classes[c as usize].members[..] {
                    load[only as usize] += self.weights[i];
                }
            }
        }
        load
    }

    /// Total weight of the placeable partitions of each class.
    pub(crate) fn demand(&self, fleet: &Fleet) -> Vec<u64> {
        let mut demand = vec![0u64; fleet.classes.len()];
        if fleet.class_of.is_empty() {
            demand[FREE as usize] = self.weights.iter().sum();
            return demand;
        }
        for (&c, &w) in fleet.class_of.iter().zip(&self.weights) {
            if c != PARKED {
                demand[c as usize] += w;
            }
        }
        demand
    }

    /// Total weight of the partitions without an owner.
    pub(crate) fn unowned_weight(&self) -> u64 {
        self.owner
            .iter()
            .zip(&self.weights)
            .filter(|&(&o, _)| o == NO_OWNER)
            .map(|(_, &w)| w)
            .sum()
    }
}

/// Clockwise ring distance from `hash` to the next of `points` (sorted); the
/// same for every hash when there are no points.
fn distance_to_next(points: &[u64], hash: u64) -> u64 {
    let i = points.partition_point(|&p| p < hash);
    match points.get(i).or_else(|| points.first()) {
        Some(&p) => p.wrapping_sub(hash),
        None => 0,
    }
}
