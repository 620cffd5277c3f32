//! Deterministic simulation of whole groups under seeded faults (see
//! `parti::sim` for the model, the invariants and the convergence bound).
//!
//! Replay one seed:
//! `PARTI_SIM_SEED=123 cargo test --release --test simulation replay -- --nocapture`
//! (`PARTI_SIM_PRESET=faulty` for the regression seeds).

use std::time::Instant;

use parti::sim::{self, SimConfig, SimFailure, SimReport};

/// Seeds that once broke an invariant, with their preset and the bug each
/// exposed.
const REGRESSIONS: &[(&str, u64, &str)] = &[
    (
        "store",
        161,
        "the store lost a live worker's heartbeat and record, then the leader changed: the new \
         leader granted what that worker held before it heartbeated again or fenced itself",
    ),
    (
        "store",
        3512,
        "the assignments bucket dropped after a cold start was written: the leader counted its \
         grants as placed while no worker ever saw them",
    ),
    (
        "store",
        2830,
        "a revision issued again let a holder renew over another's lease at a lower epoch: a \
         worker that had seen the higher one ignored the holder's records for good",
    ),
    (
        "store",
        7547,
        "a suspect worker handed a deposed leader's version afterwards was written the same \
         number with other partitions, which it ignored while keeping what the first gave",
    ),
    (
        "faulty",
        365,
        "a fenced worker announced its new incarnation before its release callback returned; \
         the leader took that as released and granted its partitions elsewhere",
    ),
    (
        "faulty",
        479,
        "a new leader whose read of the published keys failed adopted a partial view and \
         granted a partition that a worker it missed still held",
    ),
    (
        "faulty",
        84,
        "a new leader whose workers watch could not be opened ended its leader thread but \
         kept renewing the lease: nobody published again",
    ),
    (
        "mixed",
        102,
        "the leader thread ended when its lease looked expired while a slow renewal was in \
         flight; the renewal then succeeded and the lease was held by a leader that never \
         published again",
    ),
    (
        "ops",
        13,
        "a worker whose applied version the store had no readable record of (a corrupt \
         record) counted as holding every partition until it applied a new version, and \
         being drained it was never written one: nothing was granted again",
    ),
    (
        "ops",
        2591,
        "a leaver that fenced itself counted as drained before its release callback \
         returned; its key was deleted and its partitions granted elsewhere while it ran",
    ),
    (
        "store",
        3913,
        "a follower's lease watch was closed while the lease bucket was dropped; it ignored the \
         new holder's renewals as below a revision seen, counted the lease unchanged once they \
         reached that revision again with the same record, and took it over: two processes \
         acting on an unexpired lease",
    ),
    (
        "lease-loss",
        1402,
        "two processes acting on an unexpired lease after the lease bucket rolled back (the \
         lease-loss preset's form of the seed above; passes since a reopened watch's replay is \
         checked)",
    ),
    (
        "store",
        983,
        "two terms got epoch 1 (the lease bucket forgot; the older holder acts on its lease \
         until a renewal fails) and both wrote: a re-stamp under an equal epoch fenced nobody, \
         and the published view listed a partition under two workers",
    ),
    (
        "store",
        8482,
        "a holder whose lease the store forgot took office after the loss with an epoch of the \
         numbering the store forgot; the world counted the new leader's writes as landing over \
         it (the fence check now counts terms acquired since the lease bucket last forgot)",
    ),
    (
        "store",
        5555,
        "the store issued a lease revision again to another holder with a lower epoch while no \
         watch was open: nothing reset the epochs, and a worker ignored the new leader's records \
         for good",
    ),
    (
        "store",
        6999,
        "the new leader's own create landed below a lease revision it had seen, with no watch \
         open: its heartbeat node kept the forgotten epochs and ignored its own records",
    ),
    (
        "mixed-store",
        767,
        "the store emptied while the lease holder's renewal could not get through; once \
         another worker's new lease reached the revision the old holder knew, the old holder's \
         compare-and-set renewal landed over it: two processes acting on an unexpired lease \
         (a holder now reads the key before renewing after the store forgot)",
    ),
    (
        "mixed-store",
        1539,
        "not a bug of the library: a record rolled back to, addressed to an incarnation that \
         had fenced itself since (which no worker applies), counted as one a worker would act \
         on, and the view check failed on its partition granted elsewhere",
    ),
    (
        "ops",
        1703,
        "a drained leaver started a grant the leader made before it saw the departure, \
         then quit and deleted its key while that grant's release ran",
    ),
];

fn preset(name: &str, seed: u64) -> SimConfig {
    match name {
        "faulty" => SimConfig::faulty(),
        "harsh" => SimConfig::harsh(seed),
        "laggy" => SimConfig::laggy(seed),
        "store" => SimConfig::store(seed),
        "mixed-store" => SimConfig::mixed_store(seed),
        "lease-loss" => SimConfig::lease_loss(seed),
        "source" => SimConfig::source(seed),
        "ops" => SimConfig::ops(seed),
        "keep" => SimConfig::keep(seed),
        _ => SimConfig::mixed(seed),
    }
}

/// Runs `seeds` on both cores.
fn run_seeds(
    seeds: std::ops::Range<u64>,
    cfg: impl Fn(u64) -> SimConfig + Sync,
) -> (Vec<SimReport>, Vec<SimFailure>) {
    let seeds: Vec<u64> = seeds.collect();
    let cfg = &cfg;
    let results: Vec<Result<SimReport, SimFailure>> = std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .chunks(seeds.len().div_ceil(2).max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|seed| sim::run(*seed, &cfg(*seed)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("simulation thread"))
            .collect()
    });
    let (ok, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    (
        ok.into_iter().filter_map(Result::ok).collect(),
        failed.into_iter().filter_map(Result::err).collect(),
    )
}

#[test]
fn mixed_faults_many_seeds() {
    let started = Instant::now();
    let (ok, failed) = run_seeds(0..600, SimConfig::mixed);
    let worst = ok
        .iter()
        .map(|r| r.converged_after)
        .max()
        .unwrap_or_default();
    let faults: u64 = ok.iter().map(|r| r.faults).sum();
    let terms: u64 = ok.iter().map(|r| r.terms).sum();
    let stale: u64 = ok.iter().map(|r| r.stale_puts).sum();
    let overwrites: u64 = ok.iter().map(|r| r.late_overwrites).sum();
    println!(
        "{} seeds in {:?}: {} failed; {faults} faults, {terms} leader terms, {stale} late assignment writes \
         ({overwrites} landed over a newer leader); slowest convergence {worst:?} (bound {:?})",
        ok.len() + failed.len(),
        started.elapsed(),
        failed.len(),
        SimConfig::faulty().bound()
    );
    for f in &failed {
        println!("{f}");
    }
    let seeds: Vec<u64> = failed.iter().map(|f| f.seed).collect();
    assert!(failed.is_empty(), "failing seeds: {seeds:?}");
    assert_eq!(overwrites, 0, "a deposed leader's write got past the fence");
    assert!(
        faults > 2000,
        "too few faults injected to mean anything: {faults}"
    );
}

/// What users and operators do (`ops`: graceful leaves, drains and
/// undrains, rebalance requests, corrupt values written by a third party,
/// source changes told through `refresh_partitions`) keeps every invariant,
/// and each promise was checked often enough to mean something.
#[test]
fn user_and_operator_actions_keep_their_promises() {
    let started = Instant::now();
    let (ok, failed) = run_seeds(0..300, SimConfig::ops);
    for f in &failed {
        println!("{f}");
    }
    let sum = |f: fn(&SimReport) -> u64| ok.iter().map(f).sum::<u64>();
    let (leaves, drains, undrains) = (
        sum(|r| r.leaves_checked),
        sum(|r| r.drains_checked),
        sum(|r| r.undrains_checked),
    );
    let (corrupt, reported) = (sum(|r| r.corrupt_writes), sum(|r| r.corrupt_reported));
    println!(
        "300 ops seeds in {:?}: {} failed; {leaves} leaves, {drains} drains and {undrains} undrains \
         checked; {corrupt} corrupt values written, {reported} reported, {} gone unread; {} source changes",
        started.elapsed(),
        failed.len(),
        sum(|r| r.corrupt_gone_unread),
        sum(|r| r.source_changes),
    );
    assert!(
        failed.is_empty(),
        "failing seeds: {:?}",
        failed.iter().map(|f| f.seed).collect::<Vec<_>>()
    );
    assert!(leaves > 50, "only {leaves} leaves were checked");
    assert!(drains > 50, "only {drains} drains were checked");
    assert!(undrains > 40, "only {undrains} undrains were checked");
    assert!(
        reported * 2 > corrupt,
        "only {reported} of {corrupt} corrupt values were reported"
    );
}

/// `keep_assignment_on_outage`: workers keep their partitions through an
/// outage of their own; no two owners among workers that are not degraded.
#[test]
fn keep_assignment_on_outage_many_seeds() {
    let (ok, failed) = run_seeds(0..200, SimConfig::keep);
    for f in &failed {
        println!("{f}");
    }
    let kept: u64 = ok.iter().map(|r| r.kept_through_outage).sum();
    println!(
        "200 keep seeds: {} failed, {kept} outages kept through",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "failing seeds: {:?}",
        failed.iter().map(|f| f.seed).collect::<Vec<_>>()
    );
    assert!(kept > 100, "only {kept} outages were kept through");
}

/// The `store` preset (the store itself forgets: a bucket rolled back by its
/// last acknowledged writes, a bucket dropped, the store emptied, each
/// followed by a join): no two owners, no token below one a downstream has
/// seen, the view double-lists nothing but a stale record nobody acts on,
/// and every store fault recovered from within `SimConfig::store_bound`.
/// Not every seed passes yet (0..10000: docs/operations.md "Still
/// failing"; none among the first 400): these 400 guard what was fixed.
#[test]
fn store_faults_many_seeds() {
    let started = Instant::now();
    let (ok, failed) = run_seeds(0..400, SimConfig::store);
    for f in &failed {
        println!("{f}");
    }
    let faults: u64 = ok.iter().map(|r| r.store_faults).sum();
    let slowest = ok
        .iter()
        .map(|r| r.slowest_recovery)
        .max()
        .unwrap_or_default();
    println!(
        "400 store seeds in {:?}: {} failed; {faults} store faults, slowest recovery {slowest:?} (bound {:?})",
        started.elapsed(),
        failed.len(),
        SimConfig::store(0).store_bound()
    );
    assert!(
        failed.is_empty(),
        "failing seeds: {:?}",
        failed.iter().map(|f| f.seed).collect::<Vec<_>>()
    );
    assert!(faults > 800, "only {faults} store faults were injected");
}

/// Seeds of the `laggy` preset (requests that reach the store long after
/// their client gave up) in which, before assignment writes were fenced, a
/// deposed leader's write landed over its successor's (5156, 6475, 11084,
/// 16906) or a worker applied the same version twice (6787, 14499).
const FENCE_SEEDS: &[u64] = &[5156, 6475, 6787, 11084, 14499, 16906];

#[test]
fn partition_source_changes_are_followed() {
    let (ok, failed) = run_seeds(0..150, SimConfig::source);
    for f in &failed {
        println!("{f}");
    }
    let changes: u64 = ok.iter().map(|r| r.source_changes).sum();
    println!(
        "150 source seeds: {} failed, {changes} source changes",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "failing seeds: {:?}",
        failed.iter().map(|f| f.seed).collect::<Vec<_>>()
    );
    assert!(changes > 50, "only {changes} source changes were injected");
}

#[test]
fn deposed_leaders_late_writes_are_fenced() {
    let (ok, failed) = run_seeds(0..1500, SimConfig::laggy);
    let mut reports = ok;
    let mut failures = failed;
    for seed in FENCE_SEEDS {
        match sim::run(*seed, &SimConfig::laggy(*seed)) {
            Ok(r) => reports.push(r),
            Err(f) => failures.push(f),
        }
    }
    for f in &failures {
        println!("{f}");
    }
    let stale: u64 = reports.iter().map(|r| r.stale_puts).sum();
    let overwrites: u64 = reports.iter().map(|r| r.late_overwrites).sum();
    println!(
        "{} laggy seeds: {} failed, {stale} late assignment writes, {overwrites} landed over a newer leader",
        reports.len() + failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failing seeds: {:?}",
        failures.iter().map(|f| f.seed).collect::<Vec<_>>()
    );
    assert!(stale > 0, "no late write was even attempted");
    assert_eq!(overwrites, 0, "a deposed leader's write got past the fence");
}

#[test]
fn regression_seeds() {
    for (name, seed, bug) in REGRESSIONS {
        if let Err(f) = sim::run(*seed, &preset(name, *seed)) {
            panic!("regression ({bug}):\n{f}");
        }
    }
}

/// Replays `PARTI_SIM_SEED` (default 42) with `PARTI_SIM_PRESET` (default
/// `mixed`) twice, and checks both runs are identical.
#[test]
fn replay() {
    // `RUST_LOG=info` shows the nodes' own account of the run.
    let _ = env_logger::builder().is_test(true).try_init();
    let seed = std::env::var("PARTI_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    let cfg = preset(&std::env::var("PARTI_SIM_PRESET").unwrap_or_default(), seed);
    let a = sim::run(seed, &cfg);
    let b = sim::run(seed, &cfg);
    match (&a, &b) {
        (Ok(a), Ok(b)) => {
            println!("{a:?}");
            let key = |r: &SimReport| {
                (
                    r.steps,
                    r.faults,
                    r.terms,
                    r.converged_after,
                    r.alive,
                    r.stale_puts,
                )
            };
            assert_eq!(key(a), key(b), "replay differs");
            assert!(a.faults > 0, "seed {seed} injected no fault");
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
    match sim::run(1, &cfg) {
        Ok(r) => {
            println!(
                "1000 workers x 100000 partitions: {r:?}, wall {:?}",
                started.elapsed()
            );
            assert_eq!(r.alive, 1000);
            assert!(r.converged_after <= cfg.bound());
        }
        Err(f) => panic!("{f}"),
    }
}

/// Fresh seeds beyond the fixed set: by default 50 seeds at four times the
/// fault rate (`harsh`); a longer exploration with
/// `PARTI_SIM_SWEEP=1000..6000 PARTI_SIM_PRESET=mixed cargo test --release
/// --test simulation sweep -- --nocapture`.
#[test]
fn sweep() {
    let range = std::env::var("PARTI_SIM_SWEEP").unwrap_or_else(|_| "2600..2650".into());
    let (from, to) = range
        .split_once("..")
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .expect("PARTI_SIM_SWEEP=<from>..<to>");
    let started = Instant::now();
    let name = std::env::var("PARTI_SIM_PRESET").unwrap_or_else(|_| "harsh".into());
    let (ok, failed) = run_seeds(from..to, |seed| preset(&name, seed));
    let stale: u64 = ok.iter().map(|r| r.stale_puts).sum();
    let overwrites: u64 = ok.iter().map(|r| r.late_overwrites).sum();
    println!(
        "{} seeds in {:?}: {} failed, {stale} late assignment writes ({overwrites} landed over a newer leader)",
        ok.len() + failed.len(),
        started.elapsed(),
        failed.len()
    );
    for f in &failed {
        println!("{f}");
    }
    let fenced_badly: Vec<u64> = ok
        .iter()
        .filter(|r| r.late_overwrites > 0)
        .map(|r| r.seed)
        .collect();
    assert!(
        failed.is_empty(),
        "failing seeds: {:?}",
        failed.iter().map(|f| f.seed).collect::<Vec<_>>()
    );
    assert_eq!(
        overwrites, 0,
        "a deposed leader's write got past the fence (seeds {fenced_badly:?})"
    );
}

/// The runtime itself (real threads, memory store) for the bug behind seed
/// 84: the leader's first attempts to watch the workers fail; it must retry
/// and publish, not hold the lease without ever publishing.
#[test]
fn runtime_leader_retries_taking_office() {
    use parti::source::StaticSource;
    use parti::store::memory::{Fault, KvOp, MemoryBackend};
    use parti::store::KvError;
    use parti::{Config, ManagerBuilder, Partition};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let backend = MemoryBackend::default();
    let failures = Arc::new(AtomicUsize::new(0));
    let seen = failures.clone();
    backend.set_fault_hook(Some(Arc::new(move |op, bucket: &str, key: &str| {
        let workers_watch = op == KvOp::Watch && key.is_empty() && bucket.ends_with("-workers");
        (workers_watch && seen.fetch_add(1, Ordering::SeqCst) < 3)
            .then(|| Fault::Fail(KvError::Unavailable("injected".into())))
    })));
    let ms = Duration::from_millis;
    let config = Config {
        heartbeat_interval: ms(50),
        heartbeat_ttl: ms(200),
        worker_id_ttl: ms(1000),
        election_ttl: ms(300),
        cold_start_window: ms(200),
        planned_scale_window: ms(200),
        emergency_grace: ms(100),
        rebalance_cooldown: ms(100),
        startup_timeout: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(3),
        operation_timeout: ms(100),
        ..Config::default()
    };
    let manager = ManagerBuilder::with_backend(Arc::new(backend), "office")
        .config(config)
        .partitions(StaticSource::new(
            (0..4).map(|i| Partition::new(format!("p{i}"))),
        ))
        .start()
        .expect("the leader retried taking office and published");
    assert!(
        failures.load(Ordering::SeqCst) >= 3,
        "the fault was injected"
    );
    assert_eq!(manager.assignment().len(), 4);
    manager.stop().expect("stop");
}

/// The runtime itself for the bug behind seed 102: renewals slowed past the
/// step-down point for a while; afterwards the leader must still publish
/// (a joiner gets its assignment), not hold the lease with no leader thread.
#[test]
fn runtime_leader_survives_slow_renewals() {
    use parti::source::StaticSource;
    use parti::store::memory::{KvOp, MemoryBackend};
    use parti::{Config, ManagerBuilder, Partition};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let ms = Duration::from_millis;
    let config = Config {
        heartbeat_interval: ms(50),
        heartbeat_ttl: ms(200),
        worker_id_ttl: ms(1000),
        election_ttl: ms(300),
        cold_start_window: ms(200),
        planned_scale_window: ms(100),
        emergency_grace: ms(100),
        rebalance_cooldown: ms(100),
        startup_timeout: Duration::from_secs(3),
        shutdown_timeout: Duration::from_secs(3),
        operation_timeout: ms(100),
        ..Config::default()
    };
    let partitions = || StaticSource::new((0..4).map(|i| Partition::new(format!("p{i}"))));
    let shared = MemoryBackend::default();
    let first_client = shared.client();
    let slow = Arc::new(AtomicBool::new(false));
    let is_slow = slow.clone();
    // Renewals answered after 160 ms: past the 225 ms step-down point of a
    // lease renewed every 100 ms, yet still confirming it.
    first_client.set_fault_hook(Some(Arc::new(move |op, bucket: &str, _key: &str| {
        if is_slow.load(Ordering::SeqCst) && op == KvOp::Update && bucket.ends_with("-leader") {
            std::thread::sleep(Duration::from_millis(160));
        }
        None
    })));
    let first = ManagerBuilder::with_backend(Arc::new(first_client), "slowlease")
        .config(config.clone())
        .partitions(partitions())
        .start()
        .expect("first worker");
    assert!(first.is_leader());
    slow.store(true, Ordering::SeqCst);
    std::thread::sleep(ms(1000));
    slow.store(false, Ordering::SeqCst);
    std::thread::sleep(ms(300));
    let second = ManagerBuilder::with_backend(Arc::new(shared.client()), "slowlease")
        .config(config)
        .partitions(partitions())
        .start()
        .expect("the leader still publishes after slow renewals");
    assert!(
        first.is_leader() != second.is_leader(),
        "exactly one leader"
    );
    second.stop().expect("stop second");
    first.stop().expect("stop first");
}
