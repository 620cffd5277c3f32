//! Compares parti's strategies with public crates users would otherwise pick,
//! and prints the markdown table shown in `docs/strategies.md`:
//!
//! ```text
//! cargo run --release --example placement_report
//! ```
//!
//! `benches/strategies.rs` reuses the adapters below, so both measure the
//! same code.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use parti::strategy::{
    minimum_moves, moved, AssignmentStrategy, BoundedLoad, ConsistentHash, RoundRobin,
};
use parti::{Error, Partition, Placement};

/// Groups `(worker, partition)` pairs into a [`Placement`] with every worker
/// present and each list sorted by id, as parti's strategies return it.
fn collect<'a>(
    workers: &[String],
    pairs: impl Iterator<Item = (&'a str, &'a Partition)>,
) -> Placement {
    let mut out: Placement = workers.iter().map(|w| (w.clone(), Vec::new())).collect();
    for (w, p) in pairs {
        if let Some(list) = out.get_mut(w) {
            list.push(p.clone());
        }
    }
    for list in out.values_mut() {
        list.sort_unstable_by(|a, b| a.id().cmp(b.id()));
    }
    out
}

/// The `hashring` crate (a plain ring) with virtual nodes, as its docs
/// suggest: each worker added `vnodes` times as `(id, index)`.
pub struct HashRingCrate {
    /// Virtual nodes per worker.
    pub vnodes: u32,
}

#[derive(Hash, Clone, Copy, PartialEq, Eq)]
struct VNode<'a> {
    worker: &'a str,
    index: u32,
}

impl AssignmentStrategy for HashRingCrate {
    fn assign(
        &self,
        workers: &[String],
        parts: &[Partition],
        _: &Placement,
    ) -> Result<Placement, Error> {
        if workers.is_empty() {
            return Err(Error::NoWorkers);
        }
        let mut ring = hashring::HashRing::new();
        let nodes = workers
            .iter()
            .flat_map(|w| (0..self.vnodes).map(move |index| VNode { worker: w, index }))
            .collect();
        ring.batch_add(nodes);
        let pairs = parts
            .iter()
            .filter_map(|p| ring.get(&p.id()).map(|n| (n.worker, p)));
        Ok(collect(workers, pairs))
    }
}

/// The `hrw-hash` crate: rendezvous hashing, best-scored worker wins.
pub struct HrwHashCrate;

impl AssignmentStrategy for HrwHashCrate {
    fn assign(
        &self,
        workers: &[String],
        parts: &[Partition],
        _: &Placement,
    ) -> Result<Placement, Error> {
        if workers.is_empty() {
            return Err(Error::NoWorkers);
        }
        let nodes = hrw_hash::HrwNodes::new(workers.iter().map(String::as_str));
        let pairs = parts
            .iter()
            .filter_map(|p| nodes.sorted(&p.id()).next().map(|w| (*w, p)));
        Ok(collect(workers, pairs))
    }
}

/// The `rendezvous_hash` crate: rendezvous hashing, first candidate wins.
pub struct RendezvousHashCrate;

impl AssignmentStrategy for RendezvousHashCrate {
    fn assign(
        &self,
        workers: &[String],
        parts: &[Partition],
        _: &Placement,
    ) -> Result<Placement, Error> {
        if workers.is_empty() {
            return Err(Error::NoWorkers);
        }
        let mut nodes = rendezvous_hash::RendezvousNodes::default();
        for w in workers {
            nodes.insert(w.as_str());
        }
        let pairs = parts
            .iter()
            .filter_map(|p| nodes.calc_candidates(&p.id()).next().map(|w| (*w, p)));
        Ok(collect(workers, pairs))
    }
}

/// Every strategy in the comparison, ours first.
pub fn all_strategies() -> Vec<(&'static str, Box<dyn AssignmentStrategy>)> {
    vec![
        ("parti BoundedLoad (ε=0)", Box::new(BoundedLoad::default())),
        (
            "parti BoundedLoad (ε=0.1)",
            Box::new(BoundedLoad::with_epsilon(0.1)),
        ),
        (
            "parti ConsistentHash (150 vnodes)",
            Box::new(ConsistentHash::default()),
        ),
        ("parti RoundRobin", Box::new(RoundRobin)),
        (
            "hashring 0.3 (150 vnodes)",
            Box::new(HashRingCrate { vnodes: 150 }),
        ),
        ("hrw-hash 2", Box::new(HrwHashCrate)),
        ("rendezvous_hash 0.3", Box::new(RendezvousHashCrate)),
    ]
}

/// `n` equal-weight partitions `partition-0..n`.
pub fn partitions(n: usize) -> Vec<Partition> {
    (0..n)
        .map(|i| Partition::new(format!("partition-{i}")))
        .collect()
}

/// Workers `worker-0..n`.
pub fn workers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("worker-{i}")).collect()
}

/// Median wall time of `runs` calls.
fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[allow(dead_code)]
fn main() -> Result<(), Error> {
    const N: usize = 10_000;
    const W: usize = 200;
    let parts = partitions(N);
    let (ws, joined) = (workers(W), workers(W + 1));
    // The leaver is a worker in the middle of the id order.
    let leaver = &ws[100];
    let left: Vec<String> = ws.iter().filter(|w| *w != leaver).cloned().collect();
    let (big_parts, big_workers) = (partitions(100_000), workers(1_000));
    let none = Placement::new();
    let balanced = RoundRobin.assign(&ws, &parts, &none)?;

    println!(
        "| strategy | 10K×200 cold | 10K×200 join (with previous) | 100K×1000 cold | max/avg load | moved 200→201 | moved 200→199 | moved ÷ minimum (join / leave) | leaver's partitions back after rejoin |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, s) in all_strategies() {
        let before = s.assign(&ws, &parts, &none)?;
        let cold = median_time(21, || drop(s.assign(&ws, &parts, &none)));
        let join_time = median_time(21, || drop(s.assign(&joined, &parts, &before)));
        // The rendezvous crates sort every worker per partition: one run of
        // the big case takes seconds, so they get fewer runs.
        let big_runs = if name.contains("rendezvous") || name.contains("hrw") {
            1
        } else {
            5
        };
        let big = median_time(big_runs, || drop(s.assign(&big_workers, &big_parts, &none)));

        let max = before.values().map(Vec::len).max().unwrap_or(0);
        let load = max as f64 / (N as f64 / W as f64);

        let after_join = s.assign(&joined, &parts, &before)?;
        let after_leave = s.assign(&left, &parts, &before)?;
        let (mj, ml) = (moved(&before, &after_join), moved(&before, &after_leave));
        // The least any strategy must move: on a join, what the newcomer
        // needs for a balanced result (⌊N/201⌋, also `minimum_moves` from a
        // balanced start); on a leave, the leaver's own partitions.
        let min_j = minimum_moves(&balanced, &joined, &parts);
        let min_l = before[leaver].len();
        let rejoined = s.assign(&ws, &parts, &after_leave)?;
        let old: BTreeSet<&str> = before[leaver].iter().map(Partition::id).collect();
        let back = rejoined[leaver]
            .iter()
            .filter(|p| old.contains(p.id()))
            .count();

        println!(
            "| {name} | {} | {} | {} | {load:.2} | {mj} | {ml} | {:.2} / {:.2} | {:.1} % |",
            ms(cold),
            ms(join_time),
            ms(big),
            mj as f64 / min_j as f64,
            ml as f64 / min_l as f64,
            100.0 * back as f64 / old.len().max(1) as f64,
        );
    }
    Ok(())
}
