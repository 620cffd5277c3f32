//! Consistent hashing with bounded loads, made sticky by the previous
//! placement: the library's default strategy.

use std::cmp::Reverse;
use std::collections::HashMap;

use xxhash_rust::xxh3::Xxh3Builder;

use super::common::{
    build_placement, effective_weight, key_hash, keyed_partitions, sorted_workers, Keyed, NO_OWNER,
};
use super::ring::Ring;
use super::AssignmentStrategy;
use crate::{Error, Partition, Placement};

/// Virtual nodes per worker on BoundedLoad's ring. Caps do the balancing, so
/// the ring only needs enough points to spread overflow and to rank workers
/// for each partition; fewer points keep large groups fast.
const VIRTUAL_NODES: u32 = 64;

/// Sticky, capacity-bounded placement: the default strategy.
///
/// Each worker gets a capacity: with total weight `W` (a weight of 0 counts
/// as 1) and `n` workers, `T = max(W, ⌊(1+ε)·W⌋)` is split so every worker gets
/// `⌊T/n⌋` and `T mod n` of them one more — so no cap exceeds
/// `⌈(1+ε)·W/n⌉`. The extra units go to the workers that already hold the
/// most (ties by a hash of the worker id), which is what makes the movement
/// minimal. A worker accepts a partition while its load is below its cap.
///
/// 1. **Keep**: a partition stays with its previous owner while that owner is
///    live and below its cap.
/// 2. **Shed**: a worker above its cap sheds first the partitions that the
///    under-loaded workers (typically the one that just joined) sit closest
///    to on the ring, so a worker that leaves and rejoins with the same id
///    gets most of its old partitions back.
/// 3. **Place**: every other partition (new, orphaned, shed) walks the ring
///    clockwise from its hash to the first worker below its cap.
///
/// Guarantees (see `docs/strategies.md` and `tests/strategy_targets.rs`):
/// with ε = 0 and equal weights every worker holds exactly ⌊N/n⌋ or ⌈N/n⌉ and
/// the number of partitions moved equals the minimum any such balanced
/// placement needs; with weights no worker exceeds `(1+ε)·W/n` plus the
/// largest single weight; removing a worker moves only its partitions.
///
/// ```
/// use parti::strategy::{AssignmentStrategy, BoundedLoad};
/// use parti::{Partition, Placement};
///
/// let parts: Vec<Partition> = (0..90).map(|i| Partition::new(format!("p-{i}"))).collect();
/// let three: Vec<String> = (0..3).map(|i| format!("w-{i}")).collect();
/// let s = BoundedLoad::default();
/// let before = s.assign(&three, &parts, &Placement::new())?;
/// assert!(before.values().all(|ps| ps.len() == 30));
///
/// // w-2 leaves: only its 30 partitions move.
/// let after = s.assign(&three[..2], &parts, &before)?;
/// assert!(after["w-0"].iter().all(|p| before["w-0"].contains(p) || before["w-2"].contains(p)));
/// assert_eq!(after["w-0"].len(), 45);
/// # Ok::<(), parti::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundedLoad {
    epsilon: f64,
}

impl BoundedLoad {
    /// Allows loads up to `(1+e)` times the average: more slack means fewer
    /// moves on a join, less balance. A negative, NaN or infinite `e` counts
    /// as 0.
    pub fn with_epsilon(e: f64) -> Self {
        let epsilon = if e.is_finite() && e > 0.0 { e } else { 0.0 };
        BoundedLoad { epsilon }
    }

    /// The configured ε.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }
}

impl Default for BoundedLoad {
    fn default() -> Self {
        BoundedLoad { epsilon: 0.0 }
    }
}

impl AssignmentStrategy for BoundedLoad {
    fn assign(
        &self,
        workers: &[String],
        partitions: &[Partition],
        previous: &Placement,
    ) -> Result<Placement, Error> {
        let workers = sorted_workers(workers)?;
        let parts = keyed_partitions(partitions)?;
        let weights: Vec<u64> = parts.iter().map(|k| effective_weight(k.part)).collect();
        let mut owner = previous_owners(&workers, &parts, previous);

        let mut load = vec![0u64; workers.len()];
        for (&o, &w) in owner.iter().zip(&weights) {
            if o != NO_OWNER {
                load[o as usize] += w;
            }
        }
        let cap = capacities(&workers, &load, weights.iter().sum(), self.epsilon);
        let ring = Ring::new(&workers, VIRTUAL_NODES);
        shed_excess(&ring, &parts, &weights, &cap, &mut load, &mut owner);
        place_unowned(&ring, &parts, &weights, &cap, &mut load, &mut owner);
        Ok(build_placement(&workers, &parts, &owner))
    }
}

/// `owner[i]` = index of the live worker that held `parts[i]` in `previous`,
/// or `NO_OWNER`. A partition listed under several workers (a corrupt
/// placement) keeps the first live one in id order.
fn previous_owners(workers: &[&str], parts: &[Keyed<'_>], previous: &Placement) -> Vec<u32> {
    let mut owner = vec![NO_OWNER; parts.len()];
    if previous.is_empty() {
        return owner;
    }
    let mut index: HashMap<&str, u32, Xxh3Builder> =
        HashMap::with_capacity_and_hasher(parts.len(), Xxh3Builder::new());
    for (i, k) in parts.iter().enumerate() {
        index.insert(k.part.id(), i as u32);
    }
    for (worker, held) in previous {
        let Ok(w) = workers.binary_search(&worker.as_str()) else {
            continue;
        };
        for p in held {
            if let Some(&i) = index.get(p.id()) {
                let slot = &mut owner[i as usize];
                if *slot == NO_OWNER {
                    *slot = w as u32;
                }
            }
        }
    }
    owner
}

/// Per-worker capacities: `⌊T/n⌋`, plus one for the `T mod n` workers that
/// already carry the most. Giving the spare units to the fullest workers is
/// what makes the number of shed partitions the minimum possible.
fn capacities(workers: &[&str], load: &[u64], total: u64, epsilon: f64) -> Vec<u64> {
    let n = workers.len() as u64;
    let scaled = ((1.0 + epsilon) * total as f64).floor();
    // `as` saturates on overflow, which only ever loosens the cap.
    let t = (scaled as u64).max(total);
    let (base, spare) = (t / n, (t % n) as usize);
    let mut cap = vec![base; workers.len()];
    if spare > 0 {
        let mut order: Vec<usize> = (0..workers.len()).collect();
        order.sort_unstable_by_key(|&w| (Reverse(load[w]), key_hash(workers[w]), w));
        for &w in order.iter().take(spare) {
            cap[w] += 1;
        }
    }
    cap
}

/// Whether a worker at `load` may take one more partition.
fn accepts(load: u64, cap: u64) -> bool {
    load < cap
}

/// Makes every over-cap worker drop partitions until it is within its cap.
///
/// It drops first the partitions that sit, on the ring, much closer to an
/// under-loaded worker than to itself: those are the ones that worker would
/// own had it been there all along (typically partitions it held before it
/// left), so a rejoining worker gets its old partitions back.
fn shed_excess(
    ring: &Ring,
    parts: &[Keyed<'_>],
    weights: &[u64],
    cap: &[u64],
    load: &mut [u64],
    owner: &mut [u32],
) {
    // A worker whose whole previous set fits keeps it: every partition was
    // accepted at a load below the cap (weights are >= 1).
    let over: Vec<bool> = load.iter().zip(cap).map(|(&l, &c)| l > c).collect();
    if !over.iter().any(|&o| o) {
        return;
    }
    let receivers: Vec<u64> = ring
        .points
        .iter()
        .zip(&ring.owners)
        .filter(|&(_, &w)| accepts(load[w as usize], cap[w as usize]))
        .map(|(&p, _)| p)
        .collect();
    let own = points_by_worker(ring, cap.len());
    let vnodes = VIRTUAL_NODES as usize;
    // (worker, keep priority, partition): sorted so each over-cap worker's
    // partitions come in the order it keeps them, the ones it is relatively
    // closest to (compared with the nearest receiver) first.
    let mut held: Vec<(u32, Reverse<i128>, u32)> = Vec::new();
    for (i, (&o, k)) in owner.iter().zip(parts).enumerate() {
        if o != NO_OWNER && over[o as usize] {
            let w = o as usize;
            let to_self = distance_to_next(&own[w * vnodes..(w + 1) * vnodes], k.hash);
            let to_receiver = distance_to_next(&receivers, k.hash);
            let priority = i128::from(to_receiver) - i128::from(to_self);
            held.push((o, Reverse(priority), i as u32));
        }
    }
    held.sort_unstable();
    let mut current = NO_OWNER;
    for &(w, _, i) in &held {
        let w = w as usize;
        if current != w as u32 {
            current = w as u32;
            load[w] = 0;
        }
        let i = i as usize;
        if accepts(load[w], cap[w]) {
            load[w] += weights[i];
        } else {
            owner[i] = NO_OWNER;
        }
    }
}

/// Each worker's virtual-node positions, sorted, `VIRTUAL_NODES` per worker
/// in worker order.
fn points_by_worker(ring: &Ring, workers: usize) -> Vec<u64> {
    let vnodes = VIRTUAL_NODES as usize;
    let mut points = vec![0u64; workers * vnodes];
    let mut filled = vec![0usize; workers];
    for (&p, &w) in ring.points.iter().zip(&ring.owners) {
        let w = w as usize;
        points[w * vnodes + filled[w]] = p;
        filled[w] += 1;
    }
    points
}

/// Clockwise ring distance from `hash` to the next point of `points` (sorted);
/// the same for every partition when there are no points.
fn distance_to_next(points: &[u64], hash: u64) -> u64 {
    let i = points.partition_point(|&p| p < hash);
    match points.get(i).or_else(|| points.first()) {
        Some(&p) => p.wrapping_sub(hash),
        None => 0,
    }
}

/// Gives every unowned partition to the first worker clockwise from its hash
/// that is below its cap. Full workers are skipped in amortised constant time
/// with a "next live virtual node" union-find over ring positions.
fn place_unowned(
    ring: &Ring,
    parts: &[Keyed<'_>],
    weights: &[u64],
    cap: &[u64],
    load: &mut [u64],
    owner: &mut [u32],
) {
    if !owner.contains(&NO_OWNER) {
        return;
    }
    let vnodes = VIRTUAL_NODES as usize;
    // Ring positions of each worker's virtual nodes, grouped by worker.
    let mut positions = vec![0u32; ring.len()];
    let mut filled = vec![0usize; cap.len()];
    for (pos, &w) in ring.owners.iter().enumerate() {
        let w = w as usize;
        positions[w * vnodes + filled[w]] = pos as u32;
        filled[w] += 1;
    }
    let mut skip = SkipList::new(ring.len());
    let mut open = cap.len();
    for w in 0..cap.len() {
        if !accepts(load[w], cap[w]) {
            skip.close(&positions[w * vnodes..(w + 1) * vnodes]);
            open -= 1;
        }
    }
    for (i, k) in parts.iter().enumerate() {
        if owner[i] != NO_OWNER {
            continue;
        }
        let w = if open == 0 {
            // Unreachable while caps sum to at least the total weight; kept
            // so a bug degrades balance instead of panicking.
            least_loaded(load)
        } else {
            let pos = skip.next_open(ring.successor(k.hash));
            ring.owners[pos] as usize
        };
        owner[i] = w as u32;
        let was_open = accepts(load[w], cap[w]);
        load[w] += weights[i];
        if was_open && !accepts(load[w], cap[w]) {
            skip.close(&positions[w * vnodes..(w + 1) * vnodes]);
            open -= 1;
        }
    }
}

fn least_loaded(load: &[u64]) -> usize {
    (0..load.len()).min_by_key(|&w| (load[w], w)).unwrap_or(0)
}

/// Finds the next open ring position at or after a given one, wrapping
/// around. `next[i] == i` marks an open position; closed positions point
/// forward, and `next[len] == len` is the wrap-around sentinel.
struct SkipList {
    next: Vec<u32>,
}

impl SkipList {
    fn new(len: usize) -> Self {
        SkipList {
            next: (0..=len as u32).collect(),
        }
    }

    fn close(&mut self, positions: &[u32]) {
        for &p in positions {
            self.next[p as usize] = p + 1;
        }
    }

    /// Callers guarantee at least one position is open.
    fn next_open(&mut self, from: usize) -> usize {
        let end = self.next.len() - 1;
        let found = self.find(from);
        if found == end {
            self.find(0)
        } else {
            found
        }
    }

    fn find(&mut self, mut i: usize) -> usize {
        // Path halving keeps chains of closed positions short.
        while self.next[i] as usize != i {
            let grand = self.next[self.next[i] as usize];
            self.next[i] = grand;
            i = grand as usize;
        }
        i
    }
}
