//! Placing unowned partitions under label constraints, then repairing the
//! overflow that greedy placement can leave when a constrained partition
//! finds every eligible worker full.

use super::common::NO_OWNER;
use super::fill::WhenAllFull;
use super::fleet::{Fleet, FREE, NO_PREF, PARKED};
use super::plan::Plan;
use super::skip_list::SkipList;

/// One fill pass: the unowned partitions of one class and preference group.
struct Pass {
    class: u32,
    pref: u32,
    parts: Vec<u32>,
}

impl Plan<'_> {
    /// Like the label-free fill, in passes: the most constrained classes
    /// first (their workers are scarce), and within a class the partitions
    /// with a preference first, so they take their preferred workers before
    /// anyone else. A partition walks the ring to the first preferred worker
    /// below its limit, else the first eligible one; when every eligible
    /// worker is full it goes to the least loaded of them (relative to
    /// capacity) and the repair pass evens that out.
    pub(crate) fn fill_fleet(&mut self, limit: &[u64], when_full: WhenAllFull, fleet: &Fleet) {
        for pass in self.passes(fleet) {
            self.fill_pass(&pass, limit, when_full, fleet);
        }
    }

    fn passes(&self, fleet: &Fleet) -> Vec<Pass> {
        let mut passes: Vec<Pass> = Vec::new();
        for i in 0..self.parts.len() {
            let class = fleet.class(i);
            if self.owner[i] != NO_OWNER || class == PARKED {
                continue;
            }
            let pref = fleet.pref(i);
            match passes.iter_mut().find(|p| p.class == class && p.pref == pref) {
                Some(p) => p.parts.push(i as u32),
                None => passes.push(Pass {
                    class,
                    pref,
                    parts: vec![i as u32],
                }),
            }
        }
        let room = |class: u32| -> u64 {
            fleet.classes[class as usize]
                .members
                .iter()
                .map(|&w| fleet.capacity[w as usize])
                .sum()
        };
        passes.sort_by_key(|p| (p.class == FREE, room(p.class), p.class, p.pref == NO_PREF, p.pref));
        passes
    }

    fn fill_pass(&mut self, pass: &Pass, limit: &[u64], when_full: WhenAllFull, fleet: &Fleet) {
        let eligible = &fleet.classes[pass.class as usize].eligible;
        let preferred = fleet.prefs.get(pass.pref as usize).map(|g| &g.preferred);
        let open = |w: usize, load: &[u64]| eligible[w] && load[w] < limit[w];
        let mut lists = Vec::with_capacity(2);
        // The preferred workers first, then every eligible one.
        for pick in [preferred, None] {
            let mut skip = SkipList::new(self.ring.len());
            let mut count = 0usize;
            for w in 0..self.workers() {
                if open(w, &self.load) && pick.is_none_or(|p| p[w]) {
                    count += 1;
                } else {
                    skip.close(self.positions_of(w));
                }
            }
            lists.push((skip, count, pick));
            if preferred.is_none() {
                break;
            }
        }
        let mut successors = self.ring.successors_of_sorted();
        for &i in &pass.parts {
            let i = i as usize;
            let pos = successors.next(self.parts[i].hash);
            let w = match lists.iter_mut().find(|l| l.1 > 0) {
                Some(l) => self.ring.owners[l.0.next_open(pos)] as usize,
                None if when_full == WhenAllFull::Stop => continue,
                None => {
                    let w = self.least_loaded_of(fleet, pass.class);
                    self.overflowed[w] = true;
                    w
                }
            };
            let was_open = open(w, &self.load);
            self.owner[i] = w as u32;
            self.load[w] += self.weights[i];
            if was_open && !open(w, &self.load) {
                for l in lists.iter_mut() {
                    if l.2.is_none_or(|p| p[w]) {
                        l.0.close(self.positions_of(w));
                        l.1 -= 1;
                    }
                }
            }
        }
    }

    /// The eligible worker of `class` with the least load per unit of
    /// capacity (ties: lowest index).
    fn least_loaded_of(&self, fleet: &Fleet, class: u32) -> usize {
        let c = &fleet.capacity;
        let mut best = 0usize;
        let mut found = false;
        for &w in &fleet.classes[class as usize].members {
            let w = w as usize;
            if !found || u128::from(self.load[w]) * u128::from(c[best]) < u128::from(self.load[best]) * u128::from(c[w]) {
                best = w;
                found = true;
            }
        }
        best
    }

    /// Moves partitions along chains `v → … → x` from a worker that took
    /// overflow and is above its cap to a worker below its cap, each hop
    /// handing one partition to a worker eligible for it, until no chain is
    /// left (shortest chains first, found by breadth-first search over
    /// workers and classes). With equal weights each chain lowers the total
    /// overflow by one, so this reaches the best balance the constraints
    /// allow for these caps.
    pub(crate) fn repair(&mut self, cap: &[u64], fleet: &Fleet) {
        let n = self.workers();
        let over = |p: &Self, w: usize| p.overflowed[w] && p.load[w] > cap[w];
        if !(0..n).any(|w| over(self, w)) || !(0..n).any(|w| self.load[w] < cap[w]) {
            return;
        }
        let mut held: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, &o) in self.owner.iter().enumerate() {
            if o != NO_OWNER {
                held[o as usize].push(i as u32);
            }
        }
        // Each chain moves at least one partition; bounded so weights that
        // never settle cannot loop forever.
        for _ in 0..self.parts.len() {
            let Some(path) = self.find_chain(cap, fleet, &held, &over) else {
                return;
            };
            for (from, to, slot) in path {
                let i = held[from].swap_remove(slot) as usize;
                self.load[from] -= self.weights[i];
                self.load[to] += self.weights[i];
                self.owner[i] = to as u32;
                held[to].push(i as u32);
            }
        }
    }

    /// A shortest chain as `(from, to, index in held[from])` hops.
    fn find_chain(
        &self,
        cap: &[u64],
        fleet: &Fleet,
        held: &[Vec<u32>],
        over: &impl Fn(&Self, usize) -> bool,
    ) -> Option<Vec<(usize, usize, usize)>> {
        let n = self.workers();
        const NONE: u32 = u32::MAX;
        // parent[x] = (worker it takes from, class of the partition).
        let mut parent = vec![(NONE, 0u32); n];
        let mut seen = vec![false; n];
        let mut expanded = vec![false; fleet.classes.len()];
        let mut queue: Vec<usize> = (0..n).filter(|&w| over(self, w)).collect();
        for &w in &queue {
            seen[w] = true;
        }
        let mut head = 0;
        let mut target = None;
        'search: while head < queue.len() {
            let v = queue[head];
            head += 1;
            for &i in &held[v] {
                let class = fleet.class(i as usize);
                if class == PARKED || expanded[class as usize] {
                    continue;
                }
                expanded[class as usize] = true;
                for &x in &fleet.classes[class as usize].members {
                    let x = x as usize;
                    if seen[x] {
                        continue;
                    }
                    seen[x] = true;
                    parent[x] = (v as u32, class);
                    if self.load[x] < cap[x] {
                        target = Some(x);
                        break 'search;
                    }
                    queue.push(x);
                }
            }
        }
        let mut x = target?;
        let mut path = Vec::new();
        while parent[x].0 != NONE {
            let (v, class) = (parent[x].0 as usize, parent[x].1);
            // Prefer handing over a partition that prefers the receiver, then
            // one that does not prefer its current owner.
            let score = |&(_, &i): &(usize, &u32)| {
                let i = i as usize;
                (fleet.preferred(i, x), !fleet.preferred(i, v))
            };
            let slot = held[v]
                .iter()
                .enumerate()
                .filter(|&(_, &i)| fleet.class(i as usize) == class)
                .max_by_key(score)
                .map(|(slot, _)| slot)?;
            path.push((v, x, slot));
            x = v;
        }
        Some(path)
    }
}
