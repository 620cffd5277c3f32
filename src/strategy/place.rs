//! Placing unowned partitions under label constraints, then repairing the
//! overflow that greedy placement can leave when a constrained partition
//! finds every eligible worker full.

use super::common::NO_OWNER;
use super::fill::WhenAllFull;
use super::fleet::{Fleet, FREE, NO_PREF, PARKED};
use super::plan::Plan;
use super::ring::{SortedSuccessors, SubRing};
use super::skip_list::SkipList;

/// The unowned partitions of one class and preference group.
struct Pass {
    class: u32,
    pref: u32,
    parts: Vec<Unowned>,
}

/// An unowned partition with its ring position, so that a pass reads one
/// small list in order instead of every partition array at scattered
/// positions.
struct Unowned {
    hash: u64,
    /// Canonical position.
    at: u32,
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
        // Reused by every pass: fresh memory per pass costs page faults.
        let mut skip = SkipList::with_open(0, |_| true);
        let mut ring = SubRing::default();
        for (g, only) in schedule {
            let reuse = (&mut skip, &mut ring);
            self.fill_pass(&groups[g], only, (limit, when_full), fleet, reuse);
        }
    }

    fn unowned_groups(&self, fleet: &Fleet) -> Vec<Pass> {
        // One list per (class, preference group), found by index: a search
        // per partition costs more than the rest of the grouping.
        let width = fleet.prefs.len() + 1;
        let slot = |i: usize| {
            let class = fleet.class(i);
            if self.owner[i] != NO_OWNER || class == PARKED {
                return None;
            }
            let pref = match fleet.pref(i) {
                NO_PREF => width - 1,
                g => g as usize,
            };
            Some(class as usize * width + pref)
        };
        // Counted first, so every list is allocated once at its size.
        let mut sizes = vec![0usize; fleet.classes.len() * width];
        for i in 0..self.parts.len() {
            if let Some(s) = slot(i) {
                sizes[s] += 1;
            }
        }
        let mut lists: Vec<Vec<Unowned>> = sizes.iter().map(|&n| Vec::with_capacity(n)).collect();
        for (i, k) in self.parts.iter().enumerate() {
            if let Some(s) = slot(i) {
                lists[s].push(Unowned {
                    hash: k.hash,
                    at: i as u32,
                });
            }
        }
        lists
            .into_iter()
            .enumerate()
            .filter(|(_, parts)| !parts.is_empty())
            .map(|(slot, parts)| Pass {
                class: (slot / width) as u32,
                pref: match slot % width {
                    p if p == width - 1 => NO_PREF,
                    p => p as u32,
                },
                parts,
            })
            .collect()
    }

    /// Places the still unowned partitions of `pass`: on its preferred
    /// workers only (`only_preferred`), or on any eligible worker.
    fn fill_pass(
        &mut self,
        pass: &Pass,
        only_preferred: bool,
        (limit, when_full): (&[u64], WhenAllFull),
        fleet: &Fleet,
        (skip, scratch): (&mut SkipList, &mut SubRing),
    ) {
        if pass
            .parts
            .iter()
            .all(|u| self.owner[u.at as usize] != NO_OWNER)
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
        // The ring of the workers this pass may use: the first open one
        // clockwise on it is the first open one on the whole ring, and a
        // pass over a zone or a pool walks a fraction of the points.
        let ring = &mut *scratch;
        ring.keep(&self.ring, |w| takes[w]);
        skip.reset(ring.owners.len(), |_| true);
        let mut successors = SortedSuccessors::over(&ring.points);
        for u in &pass.parts {
            let i = u.at as usize;
            if self.owner[i] != NO_OWNER {
                continue;
            }
            let pos = successors.next(u.hash);
            let w = if open > 0 {
                // A worker that filled up in this pass is skipped point by
                // point as the walk meets them: each point closes once.
                let mut at = skip.next_open(pos);
                loop {
                    let w = ring.owners[at] as usize;
                    if self.load[w] < limit[w] {
                        break w;
                    }
                    skip.close(&[at as u32]);
                    at = skip.next_open(at);
                }
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
