//! Consistent hashing with bounded loads, made sticky by the previous
//! placement: the library's default strategy.

use std::cmp::Reverse;

use super::common::{build_placement, key_hash, keyed_partitions, sorted_workers};
use super::fill::WhenAllFull;
use super::plan::Plan;
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
/// `⌊T/n⌋` and `T mod n` of them one more, so no cap exceeds
/// `⌈(1+ε)·W/n⌉`. The extra units go to the workers that already hold the
/// most (ties by a hash of the worker id), which is what makes the movement
/// minimal. A worker accepts a partition while its load is below its cap.
///
/// 1. **Keep**: a partition stays with its previous owner while that owner is
///    live and below its cap.
/// 2. **Shed**: a worker above its cap sheds first the partitions that the
///    under-loaded workers (typically the one that just joined) sit closest
///    to on the ring relative to itself, so a worker that leaves and rejoins
///    with the same id gets most of its old partitions back.
/// 3. **Floor** (only when ε > 0): if some worker is below
///    `⌊(1−ε)·W/n⌋` (a worker joined) and the unowned partitions cannot make
///    up for it, the most loaded workers shed partitions, closest-to-receiver
///    first, and those go to the workers below the floor first. Without it a
///    joining worker would get nothing until the others exceeded their cap.
/// 4. **Place**: every other partition (new, orphaned, shed) walks the ring
///    clockwise from its hash to the first worker below its cap.
///
/// Guarantees (see `docs/strategies.md`, `tests/strategy_targets.rs` and
/// `tests/strategy_props.rs`): with ε = 0 and equal weights every worker holds
/// exactly ⌊N/n⌋ or ⌈N/n⌉ and the number of partitions moved equals the
/// minimum any such balanced placement needs; with weights no worker exceeds
/// `(1+ε)·W/n` plus the largest single weight; removing a worker moves only
/// its partitions.
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
        let mut plan = Plan::new(&workers, parts, previous, VIRTUAL_NODES);
        let total: u64 = plan.weights.iter().sum();
        let cap = capacities(&workers, &plan.load, total, self.epsilon);
        plan.shed_over_cap(&cap);
        if self.epsilon > 0.0 {
            let floor = floor_load(total, workers.len(), self.epsilon);
            plan.shed_for_floor(floor);
            plan.fill(&vec![floor; workers.len()], WhenAllFull::Stop);
        }
        plan.fill(&cap, WhenAllFull::LeastLoaded);
        Ok(build_placement(&workers, &plan.parts, &plan.owner))
    }
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
        let mut order: Vec<(Reverse<u64>, u64, usize)> = (0..workers.len())
            .map(|w| (Reverse(load[w]), key_hash(workers[w]), w))
            .collect();
        order.sort_unstable();
        for &(_, _, w) in order.iter().take(spare) {
            cap[w] += 1;
        }
    }
    cap
}

/// The load every worker should reach when ε > 0: `⌊(1−ε)·W/n⌋`, never more
/// than `⌊W/n⌋`.
fn floor_load(total: u64, workers: usize, epsilon: f64) -> u64 {
    let share = (1.0 - epsilon).max(0.0) * total as f64 / workers as f64;
    (share.floor() as u64).min(total / workers as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_sum_to_the_total_and_favour_the_fullest() {
        let workers = ["a", "b", "c"];
        // 10 over 3: one worker gets 4, and it must be the one holding most.
        let cap = capacities(&workers, &[3, 5, 2], 10, 0.0);
        assert_eq!(cap, vec![3, 4, 3]);
        // With slack the caps cover ⌊1.5·10⌋ = 15.
        let cap = capacities(&workers, &[0, 0, 0], 10, 0.5);
        assert_eq!(cap.iter().sum::<u64>(), 15);
        assert!(cap.iter().all(|&c| c == 5));
    }

    #[test]
    fn floor_never_exceeds_the_even_share() {
        assert_eq!(floor_load(100, 3, 0.1), 30);
        assert_eq!(floor_load(100, 3, 2.0), 0);
        assert_eq!(floor_load(0, 3, 0.1), 0);
    }

    #[test]
    fn epsilon_rejects_nonsense() {
        assert_eq!(BoundedLoad::with_epsilon(-1.0).epsilon(), 0.0);
        assert_eq!(BoundedLoad::with_epsilon(f64::NAN).epsilon(), 0.0);
        assert_eq!(BoundedLoad::with_epsilon(f64::INFINITY).epsilon(), 0.0);
        assert_eq!(BoundedLoad::with_epsilon(0.25).epsilon(), 0.25);
    }
}
