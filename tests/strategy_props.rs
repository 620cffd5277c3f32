//! Property tests: the invariants every strategy promises, on random inputs,
//! and BoundedLoad's movement bounds on random join/leave sequences.

use std::collections::BTreeSet;

use parti::strategy::{
    minimum_moves, moved, AssignmentStrategy, BoundedLoad, ConsistentHash, RoundRobin,
};
use parti::{Error, Partition, Placement};
use proptest::prelude::*;

fn strategies() -> Vec<(&'static str, Box<dyn AssignmentStrategy>)> {
    vec![
        ("round_robin", Box::new(RoundRobin)),
        ("consistent_hash", Box::new(ConsistentHash::default())),
        (
            "consistent_hash_k1",
            Box::new(ConsistentHash::with_virtual_nodes(1)),
        ),
        ("bounded_load", Box::new(BoundedLoad::default())),
        (
            "bounded_load_eps",
            Box::new(BoundedLoad::with_epsilon(0.25)),
        ),
    ]
}

/// Worker ids from a small alphabet so collisions (duplicates) happen.
fn worker_ids(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec((0u32..40).prop_map(|i| format!("w{i}")), 1..max)
}

/// Distinct partitions with random weights (0 included: it counts as 1).
fn partition_set(max: usize) -> impl Strategy<Value = Vec<Partition>> {
    prop::collection::btree_map(0u32..2000, 0u32..50, 0..max).prop_map(|m| {
        m.into_iter()
            .map(|(id, w)| Partition::with_weight(format!("p{id}"), w))
            .collect()
    })
}

/// An arbitrary previous placement: dead workers, vanished partitions and
/// partitions listed twice included.
fn garbage_previous() -> impl Strategy<Value = Placement> {
    prop::collection::btree_map(
        (0u32..60).prop_map(|i| format!("w{i}")),
        prop::collection::vec(
            (0u32..2200).prop_map(|i| Partition::new(format!("p{i}"))),
            0..40,
        ),
        0..20,
    )
}

fn check_valid(name: &str, workers: &[String], parts: &[Partition], p: &Placement) {
    let distinct: BTreeSet<&str> = workers.iter().map(String::as_str).collect();
    let keys: BTreeSet<&str> = p.keys().map(String::as_str).collect();
    assert_eq!(keys, distinct, "{name}: keys are not the live workers");
    let mut seen = BTreeSet::new();
    for list in p.values() {
        assert!(
            list.windows(2).all(|w| w[0].id() < w[1].id()),
            "{name}: list not sorted by id"
        );
        for part in list {
            assert!(seen.insert(part.clone()), "{name}: {part} placed twice");
        }
    }
    let expected: BTreeSet<Partition> = parts.iter().cloned().collect();
    assert_eq!(seen, expected, "{name}: not every partition placed once");
}

fn assert_count_balanced(name: &str, p: &Placement) {
    let total: usize = p.values().map(Vec::len).sum();
    let (lo, hi) = (total / p.len(), total.div_ceil(p.len()));
    for (w, list) in p {
        assert!(
            (lo..=hi).contains(&list.len()),
            "{name}: {w} holds {} of {total}",
            list.len()
        );
    }
}

fn unit_weights(parts: &[Partition]) -> Vec<Partition> {
    parts.iter().map(|p| Partition::new(p.id())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_partition_placed_once_and_order_does_not_matter(
        workers in worker_ids(25),
        parts in partition_set(300),
        previous in garbage_previous(),
        seed in any::<u64>(),
    ) {
        let mut shuffled_workers = workers.clone();
        let mut shuffled_parts = parts.clone();
        // Deterministic shuffle from the seed; repeat a worker id too.
        let mut s = seed | 1;
        let mut rnd = |n: usize| { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s % n as u64) as usize };
        for i in (1..shuffled_workers.len()).rev() { let j = rnd(i + 1); shuffled_workers.swap(i, j); }
        for i in (1..shuffled_parts.len()).rev() { let j = rnd(i + 1); shuffled_parts.swap(i, j); }
        shuffled_workers.push(shuffled_workers[0].clone());
        for (name, s) in strategies() {
            let a = s.assign(&workers, &parts, &previous).unwrap();
            check_valid(name, &workers, &parts, &a);
            let b = s.assign(&shuffled_workers, &shuffled_parts, &previous).unwrap();
            prop_assert_eq!(&a, &b, "{} depends on input order", name);
        }
    }

    #[test]
    fn count_balanced_strategies_are_balanced(
        workers in worker_ids(25),
        parts in partition_set(300),
        previous in garbage_previous(),
    ) {
        let parts = unit_weights(&parts);
        assert_count_balanced("round_robin", &RoundRobin.assign(&workers, &parts, &previous).unwrap());
        assert_count_balanced("bounded_load", &BoundedLoad::default().assign(&workers, &parts, &previous).unwrap());
    }

    #[test]
    fn bounded_load_respects_weighted_cap(
        workers in worker_ids(25),
        parts in partition_set(300),
        previous in garbage_previous(),
        eps in prop_oneof![Just(0.0), 0.0f64..1.0],
    ) {
        let p = BoundedLoad::with_epsilon(eps).assign(&workers, &parts, &previous).unwrap();
        let weight = |p: &Partition| u64::from(p.weight().max(1));
        let total: u64 = parts.iter().map(weight).sum();
        let largest = parts.iter().map(weight).max().unwrap_or(0);
        let bound = (1.0 + eps) * total as f64 / p.len() as f64 + largest as f64;
        for (w, list) in &p {
            let load: u64 = list.iter().map(weight).sum();
            prop_assert!(load as f64 <= bound, "{} carries {} > {}", w, load, bound);
        }
    }

    #[test]
    fn consistent_hash_ignores_previous(
        workers in worker_ids(25),
        parts in partition_set(300),
        previous in garbage_previous(),
    ) {
        let s = ConsistentHash::default();
        prop_assert_eq!(
            s.assign(&workers, &parts, &previous).unwrap(),
            s.assign(&workers, &parts, &Placement::new()).unwrap()
        );
    }

    /// Random joins, leaves and partition churn: at every step BoundedLoad
    /// (ε = 0) stays balanced and moves exactly the minimum a balanced
    /// placement needs (the issue asks for at most 1.05 × that), and a step
    /// that only removes workers moves only their partitions.
    #[test]
    fn bounded_load_moves_the_minimum(
        start in 1usize..20,
        steps in prop::collection::vec((0u8..4, any::<u16>()), 1..12),
        n_parts in 0usize..400,
    ) {
        let s = BoundedLoad::default();
        let mut live: BTreeSet<usize> = (0..start).collect();
        let mut next_worker = start;
        let mut parts: BTreeSet<usize> = (0..n_parts).collect();
        let mut next_part = n_parts;
        let to_parts = |ps: &BTreeSet<usize>| ps.iter().map(|i| Partition::new(format!("p{i}"))).collect::<Vec<_>>();
        let to_workers = |ws: &BTreeSet<usize>| ws.iter().map(|i| format!("w{i}")).collect::<Vec<_>>();
        let mut placement = s.assign(&to_workers(&live), &to_parts(&parts), &Placement::new()).unwrap();
        for (op, pick) in steps {
            let pick = usize::from(pick);
            let mut only_left = false;
            match op {
                0 => { live.insert(next_worker); next_worker += 1; }
                1 if live.len() > 1 => {
                    let w = *live.iter().nth(pick % live.len()).unwrap();
                    live.remove(&w);
                    only_left = true;
                }
                2 => { parts.insert(next_part); next_part += 1; }
                _ if !parts.is_empty() => { let p = *parts.iter().nth(pick % parts.len()).unwrap(); parts.remove(&p); }
                _ => {}
            }
            let (ws, ps) = (to_workers(&live), to_parts(&parts));
            let next = s.assign(&ws, &ps, &placement).unwrap();
            check_valid("bounded_load", &ws, &ps, &next);
            assert_count_balanced("bounded_load", &next);
            prop_assert_eq!(moved(&placement, &next), minimum_moves(&placement, &ws, &ps));
            if only_left {
                // Survivors keep everything they had.
                for w in &ws {
                    let old: BTreeSet<&Partition> = placement[w].iter().collect();
                    let new: BTreeSet<&Partition> = next[w].iter().collect();
                    prop_assert!(old.is_subset(&new), "{} lost a partition on a leave", w);
                }
            }
            placement = next;
        }
    }

    /// With slack (ε > 0) a leave moves the leaver's partitions, plus only
    /// what lifts survivors to the new floor ⌊(1−ε)·N/n⌋ when the leave
    /// raised it above what they held.
    #[test]
    fn bounded_load_with_slack_is_sticky_on_leave(
        n_workers in 2usize..20,
        n_parts in 0usize..300,
        victim in any::<u16>(),
        eps in 0.0f64..0.5,
    ) {
        let s = BoundedLoad::with_epsilon(eps);
        let ws: Vec<String> = (0..n_workers).map(|i| format!("w{i}")).collect();
        let ps: Vec<Partition> = (0..n_parts).map(|i| Partition::new(format!("p{i}"))).collect();
        let before = s.assign(&ws, &ps, &Placement::new()).unwrap();
        let gone = &ws[usize::from(victim) % n_workers];
        let rest: Vec<String> = ws.iter().filter(|w| *w != gone).cloned().collect();
        let after = s.assign(&rest, &ps, &before).unwrap();
        let floor = ((1.0 - eps) * n_parts as f64 / rest.len() as f64).floor() as usize;
        let lifted: usize = rest.iter().map(|w| floor.saturating_sub(before[w].len())).sum();
        let m = moved(&before, &after);
        prop_assert!(m <= before[gone].len() + lifted, "moved {} > {} + {}", m, before[gone].len(), lifted);
        for w in &rest {
            prop_assert!(after[w].len() >= floor, "{} below the floor", w);
        }
    }

    /// With slack, a join gives the newcomer at least the floor, and moves
    /// only what it receives plus what the join's smaller caps force off
    /// a worker that held more (see [`slack_join`]).
    #[test]
    fn bounded_load_with_slack_feeds_a_newcomer(
        n_workers in 1usize..20,
        n_parts in 0usize..300,
        eps in 0.0f64..0.5,
    ) {
        let (received, floor, between, forced) = slack_join(n_workers, n_parts, eps);
        prop_assert!(received >= floor);
        prop_assert!(between <= forced, "{between} moved between old workers, {forced} forced");
    }
}

/// A join of one worker to `n_workers` holding `n_parts` under
/// `BoundedLoad::with_epsilon(eps)`: what the newcomer received, its floor
/// ⌊(1−ε)·N/n⌋, how many partitions moved between the old workers, and how
/// many the join's caps force off them. Caps split `T = max(N, ⌊(1+ε)·N⌋)`
/// as docs/strategies.md says: ⌊T/n⌋ each, one more for the `T mod n`
/// workers that hold the most. When N/n is small a join can lower a cap
/// below what a worker held (e.g. 20 partitions: T = 22 over 19 workers
/// gives three caps of 2, over 20 only two), and the shed partition goes
/// where the ring sends it, not always to the newcomer.
fn slack_join(n_workers: usize, n_parts: usize, eps: f64) -> (usize, usize, usize, usize) {
    let s = BoundedLoad::with_epsilon(eps);
    let ws: Vec<String> = (0..n_workers).map(|i| format!("w{i}")).collect();
    let ps: Vec<Partition> = (0..n_parts)
        .map(|i| Partition::new(format!("p{i}")))
        .collect();
    let before = s.assign(&ws, &ps, &Placement::new()).unwrap();
    let mut more = ws.clone();
    more.push("new".to_string());
    let after = s.assign(&more, &ps, &before).unwrap();
    let n = more.len();
    let floor = ((1.0 - eps) * n_parts as f64 / n as f64).floor() as usize;
    let t = (((1.0 + eps) * n_parts as f64).floor() as usize).max(n_parts);
    let mut held: Vec<usize> = ws.iter().map(|w| before[w].len()).collect();
    held.sort_unstable_by(|a, b| b.cmp(a));
    let forced = held
        .iter()
        .enumerate()
        .map(|(rank, &h)| h.saturating_sub(t / n + usize::from(rank < t % n)))
        .sum();
    let received = after["new"].len();
    (received, floor, moved(&before, &after) - received, forced)
}

#[test]
fn a_slack_join_that_lowers_a_cap_moves_only_what_it_forces() {
    // The case proptest found: 20 partitions, 19 workers, ε ≈ 0.11.
    let (received, floor, between, forced) = slack_join(19, 20, 0.10993734057563923);
    assert_eq!(floor, 0);
    assert!(forced > 0, "the join lowers a cap below a worker's load");
    assert!(
        between <= forced,
        "{between} moved between old workers, {forced} forced"
    );
    assert!(received + between >= forced, "what is forced off moves");
}

#[test]
fn errors_are_typed() {
    let ws = vec!["a".to_string()];
    let ps = vec![Partition::new("x")];
    for (name, s) in strategies() {
        assert!(
            matches!(s.assign(&[], &ps, &Placement::new()), Err(Error::NoWorkers)),
            "{name}"
        );
        let dup = vec![Partition::new("x"), Partition::with_weight("x", 3)];
        assert!(
            matches!(s.assign(&ws, &dup, &Placement::new()), Err(Error::DuplicatePartition { id }) if id == "x"),
            "{name}"
        );
        let empty = vec![Partition::new("")];
        assert!(
            matches!(
                s.assign(&ws, &empty, &Placement::new()),
                Err(Error::InvalidPartition { .. })
            ),
            "{name}"
        );
        let blank_worker = vec!["a".to_string(), String::new()];
        assert!(
            matches!(
                s.assign(&blank_worker, &ps, &Placement::new()),
                Err(Error::InvalidPartition { .. })
            ),
            "{name}"
        );
    }
}

#[test]
fn no_partitions_gives_every_worker_an_empty_list() {
    let ws = vec!["b".to_string(), "a".to_string(), "b".to_string()];
    for (name, s) in strategies() {
        let p = s.assign(&ws, &[], &Placement::new()).unwrap();
        let expected = Placement::from([("a".to_string(), vec![]), ("b".to_string(), vec![])]);
        assert_eq!(p, expected, "{name}");
    }
}
