//! Deterministic simulation of whole groups under seeded faults (see
//! `parti::sim` for the model, the invariants and the convergence bound).
//!
//! Replay one seed: `PARTI_SIM_SEED=123 cargo test --release --test simulation replay -- --nocapture`.

use std::time::{Duration, Instant};

use parti::sim::{self, SimConfig, SimFailure, SimReport};

fn check(seed: u64, cfg: &SimConfig) -> Result<SimReport, SimFailure> {
    sim::run(seed, cfg)
}

/// Runs `seeds` on both cores; returns the failures.
fn run_seeds(seeds: std::ops::Range<u64>, cfg: &SimConfig) -> (Vec<SimReport>, Vec<SimFailure>) {
    let seeds: Vec<u64> = seeds.collect();
    let halves: Vec<&[u64]> = seeds.chunks(seeds.len().div_ceil(2).max(1)).collect();
    let results: Vec<Vec<Result<SimReport, SimFailure>>> = std::thread::scope(|s| {
        let handles: Vec<_> = halves
            .iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|seed| check(*seed, cfg))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("simulation thread"))
            .collect()
    });
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for r in results.into_iter().flatten() {
        match r {
            Ok(r) => ok.push(r),
            Err(f) => failed.push(f),
        }
    }
    (ok, failed)
}

#[test]
fn mixed_faults_many_seeds() {
    let cfg = SimConfig::faulty();
    let started = Instant::now();
    let (ok, failed) = run_seeds(0..500, &cfg);
    let worst = ok
        .iter()
        .map(|r| r.converged_after)
        .max()
        .unwrap_or_default();
    let faults: u64 = ok.iter().map(|r| r.faults).sum();
    println!(
        "{} seeds in {:?}: {} failed, {faults} faults injected, slowest convergence {worst:?} (bound {:?})",
        ok.len() + failed.len(),
        started.elapsed(),
        failed.len(),
        cfg.bound()
    );
    for f in &failed {
        println!("{f}");
    }
    let seeds: Vec<u64> = failed.iter().map(|f| f.seed).collect();
    assert!(failed.is_empty(), "failing seeds: {seeds:?}");
}

/// Seeds that once broke an invariant, with the bug each exposed.
const REGRESSIONS: &[(u64, &str)] = &[
    (
        365,
        "a fenced worker announced its new incarnation before its release callback returned; \
         the leader took that as released and granted its partitions elsewhere",
    ),
    (
        479,
        "a new leader whose read of the published keys failed adopted a partial view and \
         granted a partition that a worker it missed still held",
    ),
    (
        84,
        "a new leader whose workers watch could not be opened ended its leader thread but \
         kept renewing the lease: nobody published again",
    ),
];

#[test]
fn regression_seeds() {
    let cfg = SimConfig::faulty();
    for (seed, bug) in REGRESSIONS {
        if let Err(f) = check(*seed, &cfg) {
            panic!("regression ({bug}):\n{f}");
        }
    }
}

#[test]
fn replay() {
    let seed = std::env::var("PARTI_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    let cfg = SimConfig::faulty();
    let a = check(seed, &cfg);
    let b = check(seed, &cfg);
    match (&a, &b) {
        (Ok(a), Ok(b)) => {
            println!("{a:?}");
            assert_eq!(
                (a.steps, a.faults, a.terms, a.converged_after),
                (b.steps, b.faults, b.terms, b.converged_after),
                "replay differs"
            );
        }
        (Err(a), Err(b)) => {
            assert_eq!((a.at, &a.message), (b.at, &b.message), "replay differs");
            panic!("{a}");
        }
        _ => panic!("replay differs: {a:?} vs {b:?}"),
    }
}

#[test]
fn thousand_workers_hundred_thousand_partitions() {
    let cfg = SimConfig::scale(1000, 100_000);
    let started = Instant::now();
    match check(1, &cfg) {
        Ok(r) => println!("1000 x 100000: {r:?} in {:?}", started.elapsed()),
        Err(f) => panic!("{f}"),
    }
    let _ = Duration::ZERO;
}
