//! Consistent hashing with bounded loads, made sticky by the previous
//! placement: the library's default strategy.

use super::budget::within_budget;
use super::common::{
    build_placement, keyed_partitions, keyed_partitions_with, sorted_workers, Keyed,
};
use super::fill::WhenAllFull;
use super::fleet::{sorted_infos, Classifier, Fleet};
use super::plan::Plan;
use super::shares::{caps, floors};
use super::{AssignmentStrategy, WorkerInfo};
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
    max_moves: Option<usize>,
}

impl BoundedLoad {
    /// Allows loads up to `(1+e)` times the average: more slack means fewer
    /// moves on a join, less balance. A negative, NaN or infinite `e` counts
    /// as 0.
    pub fn with_epsilon(e: f64) -> Self {
        let epsilon = if e.is_finite() && e > 0.0 { e } else { 0.0 };
        BoundedLoad {
            epsilon,
            max_moves: None,
        }
    }

    /// The configured ε.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Moves at most `n` partitions between live workers per call of
    /// [`AssignmentStrategy::assign_workers`], for large fleets where one
    /// rebalance should not shuffle thousands of partitions at once.
    ///
    /// - A partition whose owner left, or no longer carries its required
    ///   labels, is always placed: hard constraints come before the budget
    ///   (such forced moves count toward it).
    /// - When the unbudgeted result moves at most `n`, it is returned
    ///   unchanged: the budget only acts when it binds.
    /// - Otherwise the result is the previous placement with `n` of the
    ///   moves toward the unbudgeted result applied, so successive calls
    ///   converge to a balanced placement.
    ///
    /// The plain [`AssignmentStrategy::assign`] ignores the budget.
    ///
    /// ```
    /// use parti::strategy::{moved, AssignmentStrategy, BoundedLoad, WorkerInfo};
    /// use parti::{Partition, Placement};
    ///
    /// let parts: Vec<Partition> = (0..100).map(|i| Partition::new(format!("p{i}"))).collect();
    /// let two = vec![WorkerInfo::new("a"), WorkerInfo::new("b")];
    /// let s = BoundedLoad::default().max_moves_per_rebalance(10);
    /// let mut p = s.assign_workers(&two[..1], &parts, &Placement::new())?;
    /// // b joins: it needs 50 partitions, at most 10 per rebalance.
    /// for expected in [10, 20, 30, 40, 50, 50] {
    ///     let next = s.assign_workers(&two, &parts, &p)?;
    ///     assert!(moved(&p, &next) <= 10);
    ///     p = next;
    ///     assert_eq!(p["b"].len(), expected);
    /// }
    /// # Ok::<(), parti::Error>(())
    /// ```
    pub fn max_moves_per_rebalance(mut self, n: usize) -> Self {
        self.max_moves = Some(n);
        self
    }

    /// The move budget, if any.
    pub fn move_budget(&self) -> Option<usize> {
        self.max_moves
    }
}

impl Default for BoundedLoad {
    fn default() -> Self {
        BoundedLoad::with_epsilon(0.0)
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
        let fleet = Fleet::uniform(workers.len());
        Ok(self.place(&workers, &fleet, partitions, parts, previous))
    }

    /// Honors required labels always, capacities, preferred labels as far as
    /// balance allows, and the move budget; see the type's documentation.
    fn assign_workers(
        &self,
        workers: &[WorkerInfo],
        partitions: &[Partition],
        previous: &Placement,
    ) -> Result<Placement, Error> {
        let infos = sorted_infos(workers)?;
        // Classified in the hashing pass: one walk over the partitions'
        // memory instead of two.
        let mut classify = Classifier::new(&infos, partitions);
        let parts = keyed_partitions_with(partitions, |j, p| classify.see(j, p))?;
        let fleet = classify.finish(&parts);
        let ids: Vec<&str> = infos.iter().map(|w| w.id()).collect();
        let Some(budget) = self.max_moves else {
            return Ok(self.place(&ids, &fleet, partitions, parts, previous));
        };
        let target = self.place(&ids, &fleet, partitions, parts.clone(), previous);
        Ok(within_budget(
            &ids, &fleet, partitions, &parts, previous, target, budget,
        ))
    }
}

impl BoundedLoad {
    /// The algorithm: keep, shed, (floor), place, (repair); see the type's
    /// documentation.
    fn place(
        &self,
        workers: &[&str],
        fleet: &Fleet,
        input: &[Partition],
        parts: Vec<Keyed>,
        previous: &Placement,
    ) -> Placement {
        let mut plan = Plan::new(workers, input, parts, previous, VIRTUAL_NODES);
        if fleet.constrained {
            plan.release_ineligible(fleet);
        }
        let demand = plan.demand(fleet);
        let cap = caps(
            fleet,
            workers,
            &plan.committed(fleet),
            &demand,
            self.epsilon,
        );
        plan.shed_over_cap(&cap, fleet);
        if self.epsilon > 0.0 {
            let floor = floors(fleet, &demand, self.epsilon);
            plan.shed_for_floor(&floor, fleet);
            plan.fill(&floor, WhenAllFull::Stop, fleet);
        }
        plan.fill(&cap, WhenAllFull::LeastLoaded, fleet);
        if fleet.constrained {
            plan.repair(&cap, fleet);
        }
        build_placement(workers, input, &plan.parts, &plan.owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_sum_to_the_total_and_favour_the_fullest() {
        let workers = ["a", "b", "c"];
        let fleet = Fleet::uniform(3);
        // 10 over 3: one worker gets 4, and it must be the one holding most.
        let cap = caps(&fleet, &workers, &[3, 5, 2], &[10], 0.0);
        assert_eq!(cap, vec![3, 4, 3]);
        // With slack the caps cover ⌊1.5·10⌋ = 15.
        let cap = caps(&fleet, &workers, &[0, 0, 0], &[10], 0.5);
        assert_eq!(cap.iter().sum::<u64>(), 15);
        assert!(cap.iter().all(|&c| c == 5));
    }

    #[test]
    fn floor_never_exceeds_the_even_share() {
        let fleet = Fleet::uniform(3);
        assert_eq!(floors(&fleet, &[100], 0.1), vec![30; 3]);
        assert_eq!(floors(&fleet, &[100], 2.0), vec![0; 3]);
        assert_eq!(floors(&fleet, &[0], 0.1), vec![0; 3]);
    }

    #[test]
    fn epsilon_rejects_nonsense() {
        assert_eq!(BoundedLoad::with_epsilon(-1.0).epsilon(), 0.0);
        assert_eq!(BoundedLoad::with_epsilon(f64::NAN).epsilon(), 0.0);
        assert_eq!(BoundedLoad::with_epsilon(f64::INFINITY).epsilon(), 0.0);
        assert_eq!(BoundedLoad::with_epsilon(0.25).epsilon(), 0.25);
    }
}
