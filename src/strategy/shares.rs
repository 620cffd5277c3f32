//! Each worker's cap: its capacity-proportional share of the load, unless
//! hard constraints make that share impossible for some set of workers.

use std::cmp::Reverse;

use super::common::key_hash;
use super::fleet::{Fleet, FREE, NO_PREF};

/// Beyond this many distinct required-label sets, the exact search for
/// over-demanded worker sets (2^classes) is skipped and shares stay purely
/// proportional; constrained overflow is then left to the repair pass.
const MAX_EXACT_CLASSES: usize = 12;

/// A set of workers that split `demand` in proportion to their capacities.
struct Group {
    members: Vec<usize>,
    demand: u64,
}

/// Per-worker caps for total weight `demand[class]` per class, given what
/// each worker kept (`load`). Within each group of workers the caps are
/// `⌊T·c/C⌋` (`T = max(D, ⌊(1+ε)·D⌋)`, `C` the group's capacity) plus one for
/// the `T − Σ⌊T·c/C⌋` workers with a fractional share that kept the most
/// above their floor (ties by worker-id hash): that choice is what makes the
/// number of shed partitions the minimum. Without constraints there is one
/// group; with them, a set of workers that must absorb more than its
/// proportional share (its classes cannot go elsewhere) becomes a group of
/// its own, and the others split the rest.
pub(crate) fn caps(
    fleet: &Fleet,
    workers: &[&str],
    load: &[u64],
    demand: &[u64],
    epsilon: f64,
) -> Vec<u64> {
    let mut cap = vec![0u64; workers.len()];
    let mut plus = vec![None; workers.len()];
    let (groups, rest_classes) = groups(fleet, demand);
    let affinity = Affinity::of(fleet, demand);
    for g in &groups {
        let total: u64 = g.demand;
        let scaled = ((1.0 + epsilon) * total as f64).floor();
        // `as` saturates on overflow, which only ever loosens the cap.
        let t = (scaled as u64).max(total);
        split(
            (&g.members, t),
            &fleet.capacity,
            workers,
            load,
            affinity.as_ref(),
            &mut cap,
            &mut plus,
        );
    }
    if let Some(rest) = groups.last() {
        cover_classes(
            fleet,
            demand,
            &rest_classes,
            &rest.members,
            load,
            &mut cap,
            &mut plus,
        );
    }
    cap
}

/// Moves spare units (the "+1" of a fractional share) inside the last group
/// until every set of its classes has room for its demand on the workers
/// eligible for it, when spare units allow: which workers get a spare unit
/// is free as far as balance goes, and a choice that strands a class would
/// force a worker below its share. Takes units from the workers that kept
/// the least above their floor and gives them to those that kept the most.
fn cover_classes(
    fleet: &Fleet,
    demand: &[u64],
    classes: &[usize],
    members: &[usize],
    load: &[u64],
    cap: &mut [u64],
    plus: &mut [Option<bool>],
) {
    if classes.is_empty() || classes.len() > MAX_EXACT_CLASSES {
        return;
    }
    let sig_of = |w: usize| -> u32 {
        classes
            .iter()
            .enumerate()
            .filter(|&(_, &k)| fleet.classes[k].eligible[w])
            .fold(0u32, |s, (j, _)| s | 1 << j)
    };
    let sig: Vec<u32> = members.iter().map(|&w| sig_of(w)).collect();
    let mut distinct: Vec<u32> = sig.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let every = (1u32 << classes.len()) - 1;
    // Each round moves one unit; there are fewer spare units than members.
    for _ in 0..members.len() {
        // Room per signature: workers that may take the same classes act
        // as one, so a round costs 2^classes × signatures, not × workers.
        let mut room_of = vec![0u64; distinct.len()];
        for (j, &w) in members.iter().enumerate() {
            if let Ok(d) = distinct.binary_search(&sig[j]) {
                room_of[d] += cap[w];
            }
        }
        let mut worst: Option<(u32, u64)> = None; // (subset, shortfall)
        for s in 1..=every {
            let (mut outside, mut room) = (0u32, 0u64);
            for (&g, &r) in distinct.iter().zip(&room_of) {
                if g & s == 0 {
                    outside |= g;
                } else {
                    room += r;
                }
            }
            let inside = every & !outside;
            let d: u64 = (0..classes.len())
                .filter(|&j| inside & (1 << j) != 0)
                .map(|j| demand[classes[j]])
                .sum();
            if d > room && worst.is_none_or(|(_, short)| d - room > short) {
                worst = Some((s, d - room));
            }
        }
        let Some((s, _)) = worst else { return };
        let excess = |w: usize| i128::from(load[w]) - i128::from(cap[w]);
        let donor = (0..members.len())
            .filter(|&j| sig[j] & s == 0 && plus[members[j]] == Some(true))
            .map(|j| members[j])
            .min_by_key(|&w| (excess(w), w));
        let taker = (0..members.len())
            .filter(|&j| sig[j] & s != 0 && plus[members[j]] == Some(false))
            .map(|j| members[j])
            .max_by_key(|&w| (excess(w), std::cmp::Reverse(w)));
        let (Some(d), Some(t)) = (donor, taker) else {
            return;
        };
        cap[d] -= 1;
        plus[d] = Some(false);
        cap[t] += 1;
        plus[t] = Some(true);
    }
}

/// The load every worker should reach when ε > 0: `⌊(1−ε)·share⌋`, never
/// more than `⌊share⌋`.
pub(crate) fn floors(fleet: &Fleet, demand: &[u64], epsilon: f64) -> Vec<u64> {
    let mut floor = vec![0u64; fleet.capacity.len()];
    for g in groups(fleet, demand).0 {
        let c_total: u64 = g.members.iter().map(|&w| fleet.capacity[w]).sum();
        for &w in &g.members {
            let exact = u128::from(g.demand) * u128::from(fleet.capacity[w]);
            let share = (1.0 - epsilon).max(0.0) * exact as f64 / c_total as f64;
            let whole = (exact / u128::from(c_total)) as u64;
            floor[w] = (share.floor() as u64).min(whole);
        }
    }
    floor
}

/// Splits `t` units over `members` in proportion to capacity; see [`caps`].
/// `plus[w]` records, for a worker with a fractional share, whether it got
/// the extra unit.
fn split(
    (members, t): (&[usize], u64),
    capacity: &[u64],
    workers: &[&str],
    load: &[u64],
    affinity: Option<&Affinity>,
    cap: &mut [u64],
    plus: &mut [Option<bool>],
) {
    let c_total: u128 = members.iter().map(|&w| u128::from(capacity[w])).sum();
    if c_total == 0 {
        return;
    }
    let mut given = 0u64;
    let mut fractional: Vec<(Reverse<i128>, u64, usize)> = Vec::new();
    for &w in members {
        let exact = u128::from(t) * u128::from(capacity[w]);
        let base = (exact / c_total) as u64;
        cap[w] = base;
        given += base;
        if exact % c_total != 0 {
            plus[w] = Some(false);
            let excess = i128::from(load[w]) - i128::from(base);
            fractional.push((Reverse(excess), key_hash(workers[w]), w));
        }
    }
    let spare = (t - given) as usize;
    if spare > 0 {
        fractional.sort_unstable();
        for w in spare_takers(&fractional, spare, affinity, cap) {
            cap[w] += 1;
            plus[w] = Some(true);
        }
    }
}

/// Sets of workers named by preferred labels or required labels, each with
/// the number of partitions that name exactly that set (a preference group
/// and a class naming the same workers count together: a zone's preferred
/// and required partitions alike want that zone's room).
pub(crate) struct Affinity {
    demand: Vec<i128>,
    members: Vec<Vec<usize>>,
    sets_of: Vec<Vec<usize>>,
}

impl Affinity {
    /// `None` without labels: the label-free path stays as it was.
    fn of(fleet: &Fleet, demand: &[u64]) -> Option<Affinity> {
        if !fleet.constrained || (fleet.prefs.is_empty() && fleet.classes.len() <= 1) {
            return None;
        }
        let n = fleet.capacity.len();
        let mut by_members: std::collections::BTreeMap<Vec<usize>, i128> = Default::default();
        let mut counts = vec![0i128; fleet.prefs.len()];
        for &g in &fleet.pref_of {
            if g != NO_PREF {
                counts[g as usize] += 1;
            }
        }
        for (g, pg) in fleet.prefs.iter().enumerate() {
            if counts[g] > 0 {
                let ms: Vec<usize> = (0..n).filter(|&w| pg.preferred[w]).collect();
                *by_members.entry(ms).or_default() += counts[g];
            }
        }
        for (k, c) in fleet.classes.iter().enumerate() {
            let d = demand.get(k).copied().unwrap_or(0);
            if k as u32 != FREE && d > 0 {
                let ms: Vec<usize> = c.members.iter().map(|&w| w as usize).collect();
                *by_members.entry(ms).or_default() += i128::from(d);
            }
        }
        let mut sets_of = vec![Vec::new(); n];
        let (mut members, mut demand) = (Vec::new(), Vec::new());
        for (s, (ms, d)) in by_members.into_iter().enumerate() {
            for &w in &ms {
                sets_of[w].push(s);
            }
            members.push(ms);
            demand.push(d);
        }
        Some(Affinity {
            demand,
            members,
            sets_of,
        })
    }
}

/// The `spare` workers of `fractional` (sorted: most kept above the floor
/// first) that get the extra unit. Without labels the first `spare`. With
/// them, a tie at the cut (equal excess, so any choice sheds the same
/// number of partitions) goes first to workers in a labelled set whose
/// partitions exceed its room, so that a balanced placement honoring the
/// labels is chosen when one exists.
fn spare_takers(
    fractional: &[(Reverse<i128>, u64, usize)],
    spare: usize,
    affinity: Option<&Affinity>,
    cap: &[u64],
) -> Vec<usize> {
    let first = |k: usize| fractional.iter().take(k).map(|f| f.2).collect::<Vec<_>>();
    let Some(aff) = affinity.filter(|_| spare < fractional.len()) else {
        return first(spare);
    };
    let cut = fractional[spare - 1].0;
    let start = fractional.partition_point(|f| f.0 < cut);
    let end = fractional.partition_point(|f| f.0 <= cut);
    if end <= spare {
        return first(spare);
    }
    let mut out = first(start);
    let mut deficit: Vec<i128> = aff
        .demand
        .iter()
        .zip(&aff.members)
        .map(|(d, ms)| d - ms.iter().map(|&w| i128::from(cap[w])).sum::<i128>())
        .collect();
    for &w in &out {
        for &s in &aff.sets_of[w] {
            deficit[s] -= 1;
        }
    }
    let run = &fractional[start..end];
    let mut taken = vec![false; run.len()];
    let mut left = spare - start;
    for (j, f) in run.iter().enumerate() {
        if left == 0 {
            break;
        }
        let sets = &aff.sets_of[f.2];
        if sets.iter().any(|&s| deficit[s] > 0) {
            for &s in sets {
                deficit[s] -= 1;
            }
            taken[j] = true;
            out.push(f.2);
            left -= 1;
        }
    }
    for (j, f) in run.iter().enumerate() {
        if left == 0 {
            break;
        }
        if !taken[j] {
            out.push(f.2);
            left -= 1;
        }
    }
    out
}

/// Partitions the workers into groups; one group unless hard constraints
/// force some workers above their proportional share. Also returns the
/// constrained classes left to the last group.
fn groups(fleet: &Fleet, demand: &[u64]) -> (Vec<Group>, Vec<usize>) {
    let all: Vec<usize> = (0..fleet.capacity.len()).collect();
    let total: u64 = demand.iter().sum();
    let constrained: Vec<usize> = (0..fleet.classes.len())
        .filter(|&k| k as u32 != FREE && demand[k] > 0)
        .collect();
    if constrained.is_empty() || constrained.len() > MAX_EXACT_CLASSES {
        let group = Group {
            members: all,
            demand: total,
        };
        return (vec![group], constrained);
    }
    let mut out = Vec::new();
    let mut alive = vec![true; all.len()];
    let mut classes = constrained;
    let mut rest = total;
    while let Some((members, inside, d)) = densest(fleet, demand, &classes, &alive, rest) {
        for &w in &members {
            alive[w] = false;
        }
        classes.retain(|k| !inside.contains(k));
        rest -= d;
        out.push(Group { members, demand: d });
    }
    out.push(Group {
        members: all.into_iter().filter(|&w| alive[w]).collect(),
        demand: rest,
    });
    (out, classes)
}

/// The set of live workers, among the unions of eligible sets of some
/// classes, whose own demand (the classes no other live worker may take)
/// most exceeds what its members' proportional caps can hold, if any
/// exceeds it: `(members, classes inside, demand)`.
fn densest(
    fleet: &Fleet,
    demand: &[u64],
    classes: &[usize],
    alive: &[bool],
    rest: u64,
) -> Option<(Vec<usize>, Vec<usize>, u64)> {
    let live: Vec<usize> = (0..alive.len()).filter(|&w| alive[w]).collect();
    let c_live: u128 = live.iter().map(|&w| u128::from(fleet.capacity[w])).sum();
    if c_live == 0 || classes.is_empty() {
        return None;
    }
    // Signature of a worker: which of `classes` it may take (bit j for
    // classes[j]). Workers with the same signature act as one.
    let mut sigs: Vec<(u32, u128, u128)> = Vec::new(); // (sig, capacity, Σ⌈share⌉)
    for &w in &live {
        let sig = classes
            .iter()
            .enumerate()
            .filter(|&(_, &k)| fleet.classes[k].eligible[w])
            .fold(0u32, |s, (j, _)| s | 1 << j);
        let c = u128::from(fleet.capacity[w]);
        let ceil_share = (u128::from(rest) * c).div_ceil(c_live);
        match sigs.iter_mut().find(|s| s.0 == sig) {
            Some(s) => {
                s.1 += c;
                s.2 += ceil_share;
            }
            None => sigs.push((sig, c, ceil_share)),
        }
    }
    let every = (1u32 << classes.len()) - 1;
    let mut best: Option<(u32, u128, u128)> = None; // (inside, demand, capacity)
    for s in 1..=every {
        let (mut outside, mut cap, mut room) = (0u32, 0u128, 0u128);
        for &(sig, c, r) in &sigs {
            if sig & s == 0 {
                outside |= sig;
            } else {
                cap += c;
                room += r;
            }
        }
        let inside = every & !outside;
        let d: u128 = (0..classes.len())
            .filter(|&j| inside & (1 << j) != 0)
            .map(|j| u128::from(demand[classes[j]]))
            .sum();
        if d <= room {
            continue;
        }
        // Denser (d/cap larger) wins; compare fractions exactly.
        if best.is_none_or(|(_, bd, bc)| d * bc > bd * cap) {
            best = Some((inside, d, cap));
        }
    }
    let (inside, d, _) = best?;
    let inside: Vec<usize> = (0..classes.len())
        .filter(|&j| inside & (1 << j) != 0)
        .map(|j| classes[j])
        .collect();
    let members = live
        .into_iter()
        .filter(|&w| inside.iter().any(|&k| fleet.classes[k].eligible[w]))
        .collect();
    Some((members, inside, d as u64))
}

#[cfg(test)]
mod tests {
    use crate::strategy::{AssignmentStrategy, BoundedLoad, WorkerInfo};
    use crate::{Partition, Placement};

    /// Per zone `n` partitions preferring it and one requiring it.
    fn zoned(per_zone: &[(&str, usize)]) -> Vec<Partition> {
        let mut out = Vec::new();
        for (z, n) in per_zone {
            for i in 0..*n {
                out.push(Partition::new(format!("{z}.{i}")).prefer_label("zone", *z));
            }
            out.push(Partition::new(format!("{z}.only")).require_label("zone", *z));
        }
        out
    }

    fn zone_of(w: &str) -> &str {
        &w[..1]
    }

    /// Every zone's partitions on workers of that zone (`free.*` anywhere).
    fn all_home(placed: &Placement) -> bool {
        placed.iter().all(|(w, ps)| {
            ps.iter()
                .all(|p| p.id().starts_with("free") || p.id().starts_with(zone_of(w)))
        })
    }

    #[test]
    fn spare_units_go_where_the_labels_need_them_on_a_cold_start() {
        // Capacities 2, 2, 1, 1, 1, 1 and 10 + 5 + 5 partitions: zone b's
        // workers must take 3 and 2, not 2 and 2 (which sends a b
        // partition to zone c); the same for zone c. A choice by id hash
        // alone gets some of these namings wrong.
        let parts = zoned(&[("a", 9), ("b", 4), ("c", 4)]);
        for prefix in ["worker", "w", "node", "x", "pod"] {
            let workers: Vec<WorkerInfo> = ["a", "a", "b", "b", "c", "c"]
                .iter()
                .enumerate()
                .map(|(i, z)| {
                    WorkerInfo::new(format!("{z}-{prefix}-{i}"))
                        .label("zone", *z)
                        .capacity(if *z == "a" { 2 } else { 1 })
                })
                .collect();
            let placed = BoundedLoad::default()
                .assign_workers(&workers, &parts, &Placement::new())
                .unwrap();
            assert!(all_home(&placed), "{prefix}: {placed:?}");
        }
    }
}
