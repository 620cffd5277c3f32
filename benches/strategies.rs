//! Every strategy, ours and the public crates', placing the same partitions
//! at 1K×10, 10K×200 and 100K×1000, and BoundedLoad from 10K to 1M
//! partitions: `cargo bench --bench strategies`.
//!
//! The two rendezvous crates sort all workers for every partition, so one
//! 100K×1000 placement takes several seconds; they are left out of that size
//! unless `PARTI_BENCH_SLOW=1` is set (`placement_report` times them once).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use parti::strategy::{AssignmentStrategy, BoundedLoad, WorkerInfo};
use parti::Placement;

#[path = "../examples/placement_report.rs"]
#[allow(dead_code)]
mod report;

fn sizes(c: &mut Criterion) {
    let slow_ok = std::env::var_os("PARTI_BENCH_SLOW").is_some();
    for (n_parts, n_workers) in [(1_000, 10), (10_000, 200), (100_000, 1_000)] {
        let big = n_parts >= 100_000;
        let mut group = c.benchmark_group(format!("{}Kx{n_workers}", n_parts / 1000));
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(if big { 3 } else { 2 }));
        if big {
            group.sample_size(10);
        }
        let parts = report::partitions(n_parts);
        let workers = report::workers(n_workers);
        let none = Placement::new();
        for (name, strategy) in report::all_strategies() {
            let sorts_all_workers = name.contains("hrw") || name.contains("rendezvous");
            if big && sorts_all_workers && !slow_ok {
                continue;
            }
            group.bench_function(BenchmarkId::new("cold", name), |b| {
                b.iter(|| strategy.assign(&workers, &parts, &none))
            });
        }
        // The sticky path the leader takes on every rebalance: one worker
        // joined, the previous placement in force.
        let s = BoundedLoad::default();
        let before = s.assign(&workers, &parts, &none).expect("valid input");
        let mut joined = workers.clone();
        joined.push("worker-new".to_string());
        group.bench_function(BenchmarkId::new("join", "parti BoundedLoad (ε=0)"), |b| {
            b.iter(|| s.assign(&joined, &parts, &before))
        });
        group.finish();
    }
}

/// BoundedLoad's cost as N grows tenfold at a fixed 200 workers: close to
/// linear (the sorts add a log factor).
fn scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("scaling");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(10);
    let workers = report::workers(200);
    let none = Placement::new();
    let s = BoundedLoad::default();
    for n_parts in [10_000, 100_000, 1_000_000] {
        let parts = report::partitions(n_parts);
        group.bench_function(BenchmarkId::new("BoundedLoad x200", n_parts), |b| {
            b.iter(|| s.assign(&workers, &parts, &none))
        });
    }
    group.finish();
}

/// The leader's two calls, cold and a sticky join, at the fleet sizes of
/// issue 13, without labels (`assign`) and with zones, a vip pool and
/// capacities (`assign_workers`) side by side:
/// `cargo bench --bench strategies -- fleet`.
fn fleet(c: &mut Criterion) {
    let mut group = c.benchmark_group("fleet");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(10);
    let s = BoundedLoad::default();
    let none = Placement::new();
    for (n_parts, n_workers) in [(10_000, 200), (100_000, 1_000), (1_000_000, 10_000)] {
        let size = format!("{}x{n_workers}", n_parts);
        let parts = report::partitions(n_parts);
        let workers = report::workers(n_workers);
        let before = s.assign(&workers, &parts, &none).expect("valid input");
        let mut joined = workers.clone();
        joined.push("worker-new".to_string());
        group.bench_function(BenchmarkId::new("cold", &size), |b| {
            b.iter(|| s.assign(&workers, &parts, &none))
        });
        group.bench_function(BenchmarkId::new("join", &size), |b| {
            b.iter(|| s.assign(&joined, &parts, &before))
        });
        let zparts = report::zoned_partitions(n_parts);
        let zworkers = report::zoned_workers(n_workers);
        let zbefore = s
            .assign_workers(&zworkers, &zparts, &none)
            .expect("valid input");
        let mut zjoined = zworkers.clone();
        zjoined.push(WorkerInfo::new("worker-new").label("zone", "a").capacity(2));
        group.bench_function(BenchmarkId::new("labels cold", &size), |b| {
            b.iter(|| s.assign_workers(&zworkers, &zparts, &none))
        });
        group.bench_function(BenchmarkId::new("labels join", &size), |b| {
            b.iter(|| s.assign_workers(&zjoined, &zparts, &zbefore))
        });
    }
    group.finish();
}

criterion_group!(benches, sizes, scaling, fleet);
criterion_main!(benches);
