//! Compares parti's strategies with public crates users would otherwise pick,
//! and prints the markdown table shown in `docs/strategies.md`:
//!
//! ```text
//! cargo run --release --example placement_report
//! cargo run --release --example placement_report -- --fleet   # zones and capacities
//! cargo run --release --example placement_report -- --growth  # 10K → 1M, page faults
//! ```
//!
//! `benches/strategies.rs` reuses the adapters below, so both measure the
//! same code.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use parti::strategy::{
    minimum_moves, moved, AssignmentStrategy, BoundedLoad, ConsistentHash, RoundRobin, WorkerInfo,
};
use parti::{Error, Partition, Placement};

#[path = "support/growth.rs"]
mod growth;

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

/// Zone of worker or partition `i`: three zones, round robin.
fn zone(i: usize) -> &'static str {
    ["a", "b", "c"][i % 3]
}

/// `n` workers `worker-0..n` across three zones, capacities 1, 2 and 4 in
/// turn (so every zone holds each capacity), every tenth in pool `vip`.
pub fn zoned_workers(n: usize) -> Vec<WorkerInfo> {
    (0..n)
        .map(|i| {
            let w = WorkerInfo::new(format!("worker-{i}"))
                .label("zone", zone(i))
                .capacity([1, 2, 4][(i / 3) % 3]);
            if i % 10 == 0 {
                w.label("pool", "vip")
            } else {
                w
            }
        })
        .collect()
}

/// `n` partitions `partition-0..n`: one in twenty requires pool `vip`, and
/// three in five prefer a zone.
pub fn zoned_partitions(n: usize) -> Vec<Partition> {
    (0..n)
        .map(|i| {
            let p = Partition::new(format!("partition-{i}"));
            let p = if i % 20 == 0 {
                p.require_label("pool", "vip")
            } else {
                p
            };
            if i % 5 < 3 {
                p.prefer_label("zone", zone(i / 5))
            } else {
                p
            }
        })
        .collect()
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

/// Share of the partitions with a preference that sit on a preferred worker.
fn honored(workers: &[WorkerInfo], placed: &Placement) -> f64 {
    let (mut with, mut home) = (0usize, 0usize);
    for w in workers {
        for p in &placed[w.id()] {
            let wants = p.preferred_labels();
            if !wants.is_empty() {
                with += 1;
                home += usize::from(wants.iter().all(|(k, v)| w.has_label(k, v)));
            }
        }
    }
    100.0 * home as f64 / with.max(1) as f64
}

/// Largest distance of a worker's load from its capacity share.
fn worst_share_gap(workers: &[WorkerInfo], placed: &Placement) -> f64 {
    let total: usize = placed.values().map(Vec::len).sum();
    let cap: u32 = workers.iter().map(WorkerInfo::capacity_value).sum();
    workers
        .iter()
        .map(|w| {
            let share = total as f64 * f64::from(w.capacity_value()) / f64::from(cap);
            (placed[w.id()].len() as f64 - share).abs()
        })
        .fold(0.0, f64::max)
}

/// The zones-and-capacities table of `docs/strategies.md`: BoundedLoad with
/// and without labels at three sizes.
fn fleet_report() -> Result<(), Error> {
    println!();
    println!("| size | unconstrained cold | labels + capacities cold | unconstrained join | labels + capacities join | preferred on a preferred worker | worst gap to capacity share | moved on the join (of which to the newcomer) |");
    println!("|---|---|---|---|---|---|---|---|");
    let s = BoundedLoad::default();
    let none = Placement::new();
    for (n, w, runs) in [
        (10_000, 200, 11),
        (100_000, 1_000, 5),
        (1_000_000, 10_000, 3),
    ] {
        let (parts, ids) = (partitions(n), workers(w));
        let mut joined_ids = ids.clone();
        joined_ids.push("worker-new".to_string());
        let plain_before = s.assign(&ids, &parts, &none)?;
        let plain_cold = median_time(runs, || drop(s.assign(&ids, &parts, &none)));
        let plain_join = median_time(runs, || drop(s.assign(&joined_ids, &parts, &plain_before)));

        let (zparts, zworkers) = (zoned_partitions(n), zoned_workers(w));
        let mut joined = zworkers.clone();
        joined.push(WorkerInfo::new("worker-new").label("zone", "a").capacity(2));
        let before = s.assign_workers(&zworkers, &zparts, &none)?;
        let cold = median_time(runs, || drop(s.assign_workers(&zworkers, &zparts, &none)));
        let join = median_time(runs, || drop(s.assign_workers(&joined, &zparts, &before)));
        let after = s.assign_workers(&joined, &zparts, &before)?;
        // The newcomer (zone a, capacity 2) must reach its share; any other
        // move is a preferred partition going home or a spare unit settling.
        println!(
            "| {}K×{w} | {} | {} | {} | {} | {:.1} % | {:.2} | {} ({}) |",
            n / 1000,
            ms(plain_cold),
            ms(cold),
            ms(plain_join),
            ms(join),
            honored(&zworkers, &before),
            worst_share_gap(&zworkers, &before),
            moved(&before, &after),
            after["worker-new"].len(),
        );
    }
    Ok(())
}

#[allow(dead_code)]
fn main() -> Result<(), Error> {
    if std::env::args().any(|a| a == "--fleet") {
        return fleet_report();
    }
    if std::env::args().any(|a| a == "--growth") {
        return growth::report(partitions, workers);
    }
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
