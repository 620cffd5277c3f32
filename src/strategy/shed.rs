//! Choosing which partitions leave their previous owner.

use super::common::NO_OWNER;
use super::fleet::{Fleet, NO_PREF, PARKED};
use super::plan::Plan;

/// Priority offsets (ring priorities span ±2^64): a partition no receiver
/// may take is shed last, one its owner is preferred for later, and one a
/// receiver is preferred for (and its owner is not) first.
const NO_TAKER: i128 = 1 << 70;
const AT_HOME: i128 = 1 << 68;
const WANTS_RECEIVER: i128 = -(1 << 69);

impl Plan {
    /// Makes every worker above its cap drop partitions until it is within
    /// it, keeping those it is relatively closest to on the ring.
    pub(crate) fn shed_over_cap(&mut self, cap: &[u64], fleet: &Fleet) {
        // A worker whose whole previous set fits keeps it: each partition was
        // accepted at a load below the cap (weights are >= 1).
        let over: Vec<bool> = self.load.iter().zip(cap).map(|(&l, &c)| l > c).collect();
        if !over.contains(&true) {
            return;
        }
        let receiving: Vec<bool> = self.load.iter().zip(cap).map(|(&l, &c)| l < c).collect();
        let receivers = self.points_where(|w| receiving[w]);
        let order = self.shed_order(&over, &receivers, self.shed_bonus(fleet, &receiving));
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
    pub(crate) fn shed_for_floor(&mut self, floor: &[u64], fleet: &Fleet) {
        let need: u64 = self
            .load
            .iter()
            .zip(floor)
            .map(|(&l, &f)| f.saturating_sub(l))
            .sum();
        let mut supply = self.unowned_weight();
        if supply >= need {
            return;
        }
        let rich: Vec<bool> = self.load.iter().zip(floor).map(|(&l, &f)| l > f).collect();
        let receiving: Vec<bool> = self.load.iter().zip(floor).map(|(&l, &f)| l < f).collect();
        let receivers = self.points_where(|w| receiving[w]);
        let bonus = self.shed_bonus(fleet, &receiving);
        let mut order = self.shed_order(&rich, &receivers, bonus);
        order.sort_unstable_by_key(|&(_, priority, i)| (priority, i));
        for &(w, _, i) in &order {
            if supply >= need {
                break;
            }
            if self.load[w as usize] > floor[w as usize] {
                supply += self.weights[i as usize];
                self.release(i as usize);
            }
        }
    }
}

impl Plan {
    /// The label-aware part of the shed priority (see the constants above);
    /// always 0 without constraints, which keeps the label-free order.
    fn shed_bonus<'f>(&self, fleet: &'f Fleet, receiving: &[bool]) -> impl Fn(usize) -> i128 + 'f {
        let constrained = fleet.constrained;
        let takers: Vec<bool> = fleet
            .classes
            .iter()
            .map(|c| c.members.iter().any(|&w| receiving[w as usize]))
            .collect();
        let wanted: Vec<bool> = fleet
            .prefs
            .iter()
            .map(|g| g.preferred.iter().zip(receiving).any(|(&p, &r)| p && r))
            .collect();
        let owner = if constrained {
            self.owner.clone()
        } else {
            Vec::new()
        };
        move |i| {
            if !constrained {
                return 0;
            }
            let class = fleet.class(i);
            if class == PARKED || !takers[class as usize] {
                return NO_TAKER;
            }
            let w = owner[i] as usize;
            match fleet.pref(i) {
                NO_PREF => 0,
                _ if fleet.preferred(i, w) => AT_HOME,
                g if wanted[g as usize] => WANTS_RECEIVER,
                _ => 0,
            }
        }
    }
}
