//! BoundedLoad's move budget: apply only part of a rebalance.

use super::common::{build_placement, Keyed, NO_OWNER};
use super::fleet::Fleet;
use super::previous::previous_owners;
use crate::{Partition, Placement};

/// `target` if it moves at most `budget` partitions between live workers
/// away from `previous`; otherwise `previous` with the forced moves (owner no
/// longer eligible) and `budget − forced` of the other moves applied, dealt
/// round-robin over the receiving workers, the one short of the most first,
/// so every worker that needs partitions gets some each round. Partitions
/// without a live previous owner always go where `target` puts them.
pub(crate) fn within_budget(
    workers: &[&str],
    fleet: &Fleet,
    input: &[Partition],
    parts: &[Keyed],
    previous: &Placement,
    target: Placement,
    budget: usize,
) -> Placement {
    let before = previous_owners(workers, input, parts, previous);
    let after = previous_owners(workers, input, parts, &target);
    let mut forced = 0usize;
    // (receiver, partition) of every voluntary move.
    let mut voluntary: Vec<(u32, u32)> = Vec::new();
    for (i, (&b, &a)) in before.iter().zip(&after).enumerate() {
        if b == NO_OWNER || a == NO_OWNER || b == a {
            continue;
        }
        if fleet.eligible(i, b as usize) {
            voluntary.push((a, i as u32));
        } else {
            forced += 1;
        }
    }
    if forced + voluntary.len() <= budget {
        return target;
    }
    let allowed = budget.saturating_sub(forced);
    let mut gets = vec![0usize; workers.len()];
    for &(a, _) in &voluntary {
        gets[a as usize] += 1;
    }
    // Deal: the k-th move of every receiver before any receiver's (k+1)-th;
    // within a round, receivers that need more first.
    let mut rank = vec![0usize; workers.len()];
    let mut order: Vec<(usize, std::cmp::Reverse<usize>, u32, u32)> = voluntary
        .iter()
        .map(|&(a, i)| {
            let r = rank[a as usize];
            rank[a as usize] += 1;
            (r, std::cmp::Reverse(gets[a as usize]), a, i)
        })
        .collect();
    order.sort_unstable();
    let mut owner = after;
    for &(_, _, _, i) in order.iter().skip(allowed) {
        owner[i as usize] = before[i as usize];
    }
    build_placement(workers, input, parts, &owner)
}
