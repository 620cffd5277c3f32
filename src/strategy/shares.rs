//! Each worker's cap: its capacity-proportional share of the load, unless
//! hard constraints make that share impossible for some set of workers.

use std::cmp::Reverse;

use super::common::key_hash;
use super::fleet::{Fleet, FREE};

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
    for g in &groups {
        let total: u64 = g.demand;
        let scaled = ((1.0 + epsilon) * total as f64).floor();
        // `as` saturates on overflow, which only ever loosens the cap.
        let t = (scaled as u64).max(total);
        split(
            &g.members,
            t,
            &fleet.capacity,
            workers,
            load,
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
    members: &[usize],
    t: u64,
    capacity: &[u64],
    workers: &[&str],
    load: &[u64],
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
        for &(_, _, w) in fractional.iter().take(spare) {
            cap[w] += 1;
            plus[w] = Some(true);
        }
    }
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
