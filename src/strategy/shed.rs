//! Choosing which partitions leave their previous owner.

use super::common::NO_OWNER;
use super::plan::Plan;

impl Plan<'_> {
    /// Makes every worker above its cap drop partitions until it is within
    /// it, keeping those it is relatively closest to on the ring.
    pub(crate) fn shed_over_cap(&mut self, cap: &[u64]) {
        // A worker whose whole previous set fits keeps it: each partition was
        // accepted at a load below the cap (weights are >= 1).
        let over: Vec<bool> = self.load.iter().zip(cap).map(|(&l, &c)| l > c).collect();
        if !over.contains(&true) {
            return;
        }
        let receivers = self.points_where(|w| self.load[w] < cap[w]);
        let order = self.shed_order(&over, &receivers);
        // Walk each worker's group backwards (keep-first order), keeping
        // while the worker is below its cap, exactly as a fresh worker would
        // accept partitions.
        let mut current = NO_OWNER;
        for &(w, _, i) in order.iter().rev() {
            let (w, i) = (w as usize, i as usize);
            if current != w as u32 {
                current = w as u32;
                self.load[w] = 0;
            }
            if self.load[w] < cap[w] {
                self.load[w] += self.weights[i];
            } else {
                self.owner[i] = NO_OWNER;
            }
        }
    }

    /// Frees enough partitions for every worker to reach `floor`: when the
    /// unowned partitions do not cover the shortfall (typically a worker just
    /// joined), workers above the floor give up the partitions that the
    /// under-floor workers sit closest to (relative to their owner) first,
    /// so a rejoining worker gets its old partitions back.
    pub(crate) fn shed_for_floor(&mut self, floor: u64) {
        let need: u64 = self.load.iter().map(|&l| floor.saturating_sub(l)).sum();
        let mut supply = self.unowned_weight();
        if supply >= need {
            return;
        }
        let rich: Vec<bool> = self.load.iter().map(|&l| l > floor).collect();
        let receivers = self.points_where(|w| self.load[w] < floor);
        let mut order = self.shed_order(&rich, &receivers);
        order.sort_unstable_by_key(|&(_, priority, i)| (priority, i));
        for &(w, _, i) in &order {
            if supply >= need {
                break;
            }
            if self.load[w as usize] > floor {
                supply += self.weights[i as usize];
                self.release(i as usize);
            }
        }
    }
}
