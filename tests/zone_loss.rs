//! Mass loss on a real nats-server, with workers in child processes killed
//! with SIGKILL: 6 of 10 workers die (the leader alive, then the leader
//! among them) under a cold-start window far longer than the failover, and
//! the survivors own everything within heartbeat TTL + grace (+ the lease
//! when the leader died); a whole fleet killed and restarted under its IDs
//! is one cold start with the partitions back on their IDs.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use group::{assert_settles, children_settled, fast_config, live, ChildWorker, Observer};
use parti::{Config, RebalanceKind};
use support::{wait_until, NatsServer};

const N: usize = 40;
const WORKERS: usize = 10;
/// Time for process start-up and loopback writes on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(600);

fn config() -> Config {
    Config {
        // Far longer than any failover: a loss that waited for it would
        // fail the bound.
        cold_start_window: Duration::from_secs(4),
        ..fast_config()
    }
}

fn start_fleet(url: &str, group: &str, config: &Config) -> Vec<ChildWorker> {
    let workers: Vec<ChildWorker> = (0..WORKERS)
        .map(|i| {
            let id = format!("worker-{i}");
            ChildWorker::spawn(url, group, N, config, Some(&id))
        })
        .collect();
    assert_settles(&workers, N, Duration::from_secs(30), "the fleet");
    workers
}

/// Kills 6 workers (the leader among them when `leader_dies`) and returns
/// how long the 4 survivors took to own everything.
fn zone_loss(group: &str, leader_dies: bool) -> Duration {
    let server = NatsServer::start();
    let config = config();
    let mut workers = start_fleet(&server.url(), group, &config);
    let leader = workers
        .iter()
        .position(|w| w.is_leader())
        .expect("a leader");
    let mut doomed: Vec<usize> = (0..WORKERS).filter(|i| *i != leader).take(6).collect();
    if leader_dies {
        doomed.pop();
        doomed.push(leader);
    }
    let t0 = Instant::now();
    for i in &doomed {
        workers[*i].kill();
    }
    let bound = config.heartbeat_ttl
        + config.emergency_grace
        + if leader_dies {
            config.election_ttl
        } else {
            Duration::ZERO
        };
    let owned = wait_until(config.cold_start_window, || {
        children_settled(&live(&workers), N)
    });
    let took = t0.elapsed();
    assert!(
        owned,
        "survivors did not own everything within the cold-start window: {:?}",
        group::child_reports(&live(&workers))
    );
    println!(
        "zone loss (6 of {WORKERS} killed, leader {}): all {N} owned after {took:?} (TTL + grace{} = {bound:?})",
        if leader_dies { "among them" } else { "alive" },
        if leader_dies { " + lease" } else { "" },
    );
    assert!(took <= bound + SLACK, "took {took:?}, bound {bound:?}");
    took
}

#[test]
fn a_zone_loss_with_the_leader_alive_is_an_emergency() {
    zone_loss("zone-alive", false);
}

#[test]
fn a_zone_loss_with_the_leader_among_the_dead_is_an_emergency() {
    zone_loss("zone-leader", true);
}

#[test]
fn a_fleet_restart_is_one_cold_start_back_on_the_ids() {
    let server = NatsServer::start();
    let config = config();
    let group = "fleet-restart";
    let observer = Observer::new(&server.url(), group);
    let mut workers = start_fleet(&server.url(), group, &config);
    let before: BTreeMap<String, BTreeSet<String>> = workers
        .iter()
        .map(|w| {
            (
                w.worker_id().expect("started"),
                w.partitions().into_iter().collect(),
            )
        })
        .collect();
    let published = observer.metas().len();
    // Re-stamps by the next leader repeat this version; only newer ones are
    // rebalances of the restart.
    let last_before = observer.last_version();
    for w in &mut workers {
        w.kill();
    }
    let again: Vec<ChildWorker> = (0..WORKERS)
        .map(|i| {
            let id = format!("worker-{i}");
            ChildWorker::spawn(&server.url(), group, N, &config, Some(&id))
        })
        .collect();
    assert_settles(&again, N, Duration::from_secs(30), "the restarted fleet");
    let after = observer.timed_metas()[published..].to_vec();
    let mut kinds: Vec<RebalanceKind> = Vec::new();
    let mut top = last_before;
    for (_, m) in &after {
        if m.version > top && m.reason != RebalanceKind::Handoff {
            kinds.push(m.reason);
        }
        top = top.max(m.version);
    }
    let planned_or_emergency = kinds
        .iter()
        .filter(|k| matches!(k, RebalanceKind::Emergency | RebalanceKind::PlannedScale))
        .count();
    let back: usize = again
        .iter()
        .map(|w| {
            let id = w.worker_id().expect("started");
            let now: BTreeSet<String> = w.partitions().into_iter().collect();
            before.get(&id).map_or(0, |b| b.intersection(&now).count())
        })
        .sum();
    println!("fleet restart: rebalances {kinds:?}, {back} of {N} partitions back on their IDs");
    assert_eq!(
        planned_or_emergency, 0,
        "one cold start, nothing else: {kinds:?}"
    );
    assert!(kinds.len() <= 1, "one cold start: {kinds:?}");
    assert!(back * 100 >= N * 95, "{back} of {N} back on their IDs");
}
