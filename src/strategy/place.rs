//! Placing unowned partitions under label constraints, then repairing the
//! overflow that greedy placement can leave when a constrained partition
//! finds every eligible worker full.

use super::common::NO_OWNER;
use super::fill::WhenAllFull;
use super::fleet::{Fleet, FREE, NO_PREF, PARKED};
use super::plan::Plan;
use super::skip_list::SkipList;

/// The unowned partitions of one class and preference group.
struct Pass {
    class: u32,
    pref: u32,
    parts: Vec<u32>,
}

impl Plan {
    /// Like the label-free fill, in passes. Per class, the most constrained
    /// first (their workers are scarce): first the partitions with a
    /// preference, on their preferred workers only, then every partition of
    /// the class on any eligible worker. Placing every preferred partition
    /// before any fallback keeps one group's overflow from taking the room
    /// another group prefers. Within a pass a partition walks the ring to the
    /// first worker below its limit; when every eligible worker is full it
    /// goes to the least loaded of them (relative to capacity) and the
    /// repair pass evens that out.
    pub(crate) fn fill_fleet(&mut self, limit: &[u64], when_full: WhenAllFull, fleet: &Fleet) {
        let groups = self.unowned_groups(fleet);
        let room = |class: u32| -> u64 {
            fleet.classes[class as usize]
                .members
                .iter()
                .map(|&w| fleet.capacity[w as usize])
                .sum()
        };
        // (group, preferred workers only?)
        let mut schedule: Vec<(usize, bool)> = (0..groups.len())
            .flat_map(|g| [(g, true), (g, false)])
            .filter(|&(g, only)| !only || groups[g].pref != NO_PREF)
            .collect();
        schedule.sort_by_key(|&(g, only)| {
            let p = &groups[g];
            (
                p.class == FREE,
                room(p.class),
                p.class,
                !only,
                p.pref == NO_PREF,
                p.pref,
            )
        });
        let mut skip = SkipList::with_open(0, |_| true);
        for (g, only) in schedule {
            self.fill_pass(&groups[g], only, (limit, when_full), fleet, &mut skip);
        }
    }

    fn unowned_groups(&self, fleet: &Fleet) -> Vec<Pass> {
        let mut groups: Vec<Pass> = Vec::new();
        for i in 0..self.parts.len() {
            let class = fleet.class(i);
            if self.owner[i] != NO_OWNER || class == PARKED {
                continue;
            }
            let pref = fleet.pref(i);
            match groups
                .iter_mut()
                .find(|p| p.class == class && p.pref == pref)
            {
                Some(p) => p.parts.push(i as u32),
                None => groups.push(Pass {
                    class,
                    pref,
                    parts: vec![i as u32],
                }),
            }
        }
        groups
    }

    /// Places the still unowned partitions of `pass`: on its preferred
    /// workers only (`only_preferred`), or on any eligible worker.
    fn fill_pass(
        &mut self,
        pass: &Pass,
        only_preferred: bool,
        (limit, when_full): (&[u64], WhenAllFull),
        fleet: &Fleet,
        skip: &mut SkipList,
    ) {
        if pass
            .parts
            .iter()
            .all(|&i| self.owner[i as usize] != NO_OWNER)
        {
            return; // an earlier pass placed them all: skip building the list
        }
        let eligible = &fleet.classes[pass.class as usize].eligible;
        let preferred = fleet.prefs.get(pass.pref as usize).map(|g| &g.preferred);
        let pick = |w: usize| match (only_preferred, preferred) {
            (true, Some(p)) => p[w],
            _ => eligible[w],
        };
        let takes: Vec<bool> = (0..self.workers())
            .map(|w| pick(w) && self.load[w] < limit[w])
            .collect();
        let mut open = takes.iter().filter(|&&t| t).count();
        let owners = &self.ring.owners;
        skip.reset(owners.len(), |pos| takes[owners[pos] as usize]);
        let mut successors = self.ring.successors_of_sorted();
        for &i in &pass.parts {
            let i = i as usize;
            if self.owner[i] != NO_OWNER {
                continue;
            }
            let pos = successors.next(self.parts[i].hash);
            let w = if open > 0 {
                self.ring.owners[skip.next_open(pos)] as usize
            } else if only_preferred || when_full == WhenAllFull::Stop {
                return;
            } else {
                let w = self.least_loaded_of(fleet, pass.class);
                self.overflowed[w] = true;
                w
            };
            let was_open = self.load[w] < limit[w];
            self.owner[i] = w as u32;
            self.load[w] += self.weights[i];
            if was_open && self.load[w] >= limit[w] {
                skip.close(self.positions_of(w));
                open -= 1;
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
            if !found
                || u128::from(self.load[w]) * u128::from(c[best])
                    < u128::from(self.load[best]) * u128::from(c[w])
            {
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
