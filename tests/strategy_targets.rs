//! The issue-4 targets for BoundedLoad at full size: 10,000 equal-weight
//! partitions on 200 workers (and one sticky join and leave at 300,000). Run in release: `cargo test --release --test strategy_targets`.

use std::collections::BTreeSet;

use parti::strategy::{minimum_moves, moved, AssignmentStrategy, BoundedLoad, ConsistentHash};
use parti::{Partition, Placement};

const N: usize = 10_000;
const WORKERS: usize = 200;

fn partitions(n: usize) -> Vec<Partition> {
    (0..n)
        .map(|i| Partition::new(format!("partition-{i}")))
        .collect()
}

fn workers(ids: impl IntoIterator<Item = usize>) -> Vec<String> {
    ids.into_iter().map(|i| format!("worker-{i}")).collect()
}

/// Small deterministic generator so the test needs no extra dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn assert_balanced(p: &Placement, n_parts: usize) {
    let n = p.len();
    let (lo, hi) = (n_parts / n, n_parts.div_ceil(n));
    for (w, ps) in p {
        assert!(
            ps.len() == lo || ps.len() == hi,
            "{w} holds {} (want {lo} or {hi})",
            ps.len()
        );
    }
    assert_eq!(p.values().map(Vec::len).sum::<usize>(), n_parts);
}

fn cold(s: &dyn AssignmentStrategy, ws: &[String], ps: &[Partition]) -> Placement {
    s.assign(ws, ps, &Placement::new()).expect("valid input")
}

#[test]
fn cold_start_is_exactly_balanced() {
    let ps = partitions(N);
    assert_balanced(&cold(&BoundedLoad::default(), &workers(0..WORKERS), &ps), N);
    // Also when N is not a multiple of n: the naive ⌈N/n⌉ cap would leave
    // some workers below ⌊N/n⌋.
    assert_balanced(&cold(&BoundedLoad::default(), &workers(0..193), &ps), N);
}

#[test]
fn adding_a_worker_moves_at_most_105_percent_of_its_share() {
    let s = BoundedLoad::default();
    let ps = partitions(N);
    let before = cold(&s, &workers(0..WORKERS), &ps);
    let after = s.assign(&workers(0..=WORKERS), &ps, &before).unwrap();
    assert_balanced(&after, N);
    let m = moved(&before, &after);
    let bound = 1.05 * N.div_ceil(WORKERS + 1) as f64;
    assert!(m as f64 <= bound, "moved {m} > {bound}");
    // Everything that moved went to the newcomer.
    assert_eq!(after[&format!("worker-{WORKERS}")].len(), m);
}

#[test]
fn removing_a_worker_moves_exactly_its_partitions() {
    let s = BoundedLoad::default();
    let ps = partitions(N);
    let all = workers(0..WORKERS);
    let before = cold(&s, &all, &ps);
    let gone = &all[17];
    let rest: Vec<String> = all.iter().filter(|w| *w != gone).cloned().collect();
    let after = s.assign(&rest, &ps, &before).unwrap();
    assert_balanced(&after, N);
    assert_eq!(moved(&before, &after), before[gone].len());
    for w in &rest {
        let old: BTreeSet<&str> = before[w].iter().map(Partition::id).collect();
        let new: BTreeSet<&str> = after[w].iter().map(Partition::id).collect();
        assert!(old.is_subset(&new), "{w} lost a partition");
    }
}

#[test]
fn fifty_random_joins_and_leaves_stay_near_the_minimum() {
    let s = BoundedLoad::default();
    let ps = partitions(N);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut live: BTreeSet<usize> = (0..WORKERS).collect();
    let mut next_id = WORKERS;
    let mut placement = cold(&s, &workers(live.iter().copied()), &ps);
    for step in 0..50 {
        if rng.below(2) == 0 && live.len() > 1 {
            let victim = *live.iter().nth(rng.below(live.len())).unwrap();
            live.remove(&victim);
        } else {
            live.insert(next_id);
            next_id += 1;
        }
        let ws = workers(live.iter().copied());
        let next = s.assign(&ws, &ps, &placement).unwrap();
        assert_balanced(&next, N);
        let (m, min) = (
            moved(&placement, &next),
            minimum_moves(&placement, &ws, &ps),
        );
        assert!(
            m as f64 <= 1.05 * min as f64,
            "step {step}: moved {m}, minimum {min}"
        );
        // Stronger than the target, and what docs/strategies.md claims.
        assert_eq!(m, min, "step {step}");
        placement = next;
    }
}

/// Zipf(s = 1.1) over 1..=1000 by inverse CDF.
fn zipf_weights(n: usize, rng: &mut XorShift) -> Vec<u32> {
    let cdf: Vec<f64> = (1..=1000u32)
        .scan(0.0, |acc, k| {
            *acc += 1.0 / f64::from(k).powf(1.1);
            Some(*acc)
        })
        .collect();
    let total = cdf[cdf.len() - 1];
    (0..n)
        .map(|_| {
            let u = rng.unit() * total;
            cdf.partition_point(|&c| c < u) as u32 + 1
        })
        .collect()
}

#[test]
fn weighted_loads_stay_within_cap_plus_largest_weight() {
    let mut rng = XorShift(42);
    let ws = zipf_weights(N, &mut rng);
    let ps: Vec<Partition> = ws
        .iter()
        .enumerate()
        .map(|(i, &w)| Partition::with_weight(format!("partition-{i}"), w))
        .collect();
    let total: u64 = ws.iter().map(|&w| u64::from(w)).sum();
    let largest = u64::from(*ws.iter().max().unwrap());
    for eps in [0.0, 0.1, 0.25] {
        let s = BoundedLoad::with_epsilon(eps);
        let mut placement = cold(&s, &workers(0..WORKERS), &ps);
        // Cold start, a join, then a leave.
        for live in [
            workers(0..WORKERS),
            workers(0..=WORKERS),
            workers(1..=WORKERS),
        ] {
            placement = s.assign(&live, &ps, &placement).unwrap();
            let bound = (1.0 + eps) * total as f64 / live.len() as f64 + largest as f64;
            for (w, held) in &placement {
                let load: u64 = held.iter().map(|p| u64::from(p.weight())).sum();
                assert!(
                    load as f64 <= bound,
                    "eps {eps}: {w} carries {load} > {bound}"
                );
            }
        }
    }
}

#[test]
fn a_worker_that_rejoins_gets_its_partitions_back() {
    let s = BoundedLoad::default();
    let ps = partitions(N);
    let all = workers(0..WORKERS);
    let before = cold(&s, &all, &ps);
    let (mut back, mut total) = (0, 0);
    for x in [0, 17, 99, 150, 199] {
        let gone = &all[x];
        let rest: Vec<String> = all.iter().filter(|w| *w != gone).cloned().collect();
        let without = s.assign(&rest, &ps, &before).unwrap();
        let again = s.assign(&all, &ps, &without).unwrap();
        let old: BTreeSet<&str> = before[gone].iter().map(Partition::id).collect();
        back += again[gone].iter().filter(|p| old.contains(p.id())).count();
        total += old.len();
        println!(
            "{gone}: {} of {} back",
            again[gone].iter().filter(|p| old.contains(p.id())).count(),
            old.len()
        );
    }
    let fraction = back as f64 / total as f64;
    assert!(fraction >= 0.95, "only {fraction:.3} came back");
}

#[test]
fn consistent_hash_moves_about_one_share_on_a_join() {
    let s = ConsistentHash::default();
    let ps = partitions(N);
    let before = cold(&s, &workers(0..WORKERS), &ps);
    let after = cold(&s, &workers(0..=WORKERS), &ps);
    let m = moved(&before, &after);
    // Only partitions landing on the newcomer move; its share varies with
    // the ring, so allow a generous factor of the average.
    assert_eq!(after[&format!("worker-{WORKERS}")].len(), m);
    assert!(m <= 2 * N / (WORKERS + 1), "moved {m}");
}

/// Sticky rebalances large enough (300,000 previous entries) that the
/// previous owners are looked up in batches: a join and a leave still move
/// exactly the minimum, and a previous placement read back anew (ids not
/// shared with the input, matched by id) gives the same result as the one
/// the strategy returned.
#[test]
fn large_sticky_rebalances_move_the_minimum() {
    let ps = partitions(300_000);
    let ws = workers(0..100);
    let s = BoundedLoad::default();
    let before = cold(&s, &ws, &ps);
    let read_back: Placement = serde_json::from_slice(&serde_json::to_vec(&before).unwrap())
        .expect("a placement reads back");
    for next_workers in [workers(0..101), workers(1..100)] {
        let next = s.assign(&next_workers, &ps, &before).expect("valid input");
        assert_balanced(&next, ps.len());
        assert_eq!(
            moved(&before, &next),
            minimum_moves(&before, &next_workers, &ps),
            "{} workers",
            next_workers.len()
        );
        let from_store = s
            .assign(&next_workers, &ps, &read_back)
            .expect("valid input");
        assert_eq!(from_store, next, "{} workers", next_workers.len());
    }
}
