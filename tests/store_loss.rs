//! The store forgetting under a running group: each of the group's buckets
//! deleted (as `nats kv rm` or a wrong clean-up script would). The group must
//! heal by itself — buckets recreated, IDs claimed again, a leader elected,
//! every partition owned again — and never own a partition twice.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::time::{Duration, Instant};

use group::store_faults::{
    created, describe, group_after_a_leader_change, js, stop_the_leader, store_bound, N,
};
use group::tokens::assert_single_owners_and_rising_tokens;
use group::{fast_config, recorded_settled, start_recorded};
use parti::Config;
use support::{wait_until, NatsServer};

/// Deletes one of a running group's buckets; the group must recreate it,
/// own every partition again within the bound and still take a joiner.
fn bucket_loss(which: &str) {
    let server = NatsServer::start();
    let url = server.url();
    let group = format!("loss-{which}");
    let stream = format!("KV_parti-{group}-{which}");
    let config: Config = fast_config();
    let (mut ms, first) = group_after_a_leader_change(&url, &group, &config);
    let mut stopped = vec![first];
    let before = created(&url, &stream).expect("stream exists");
    let t0 = Instant::now();
    let v = js(&url, &format!("STREAM.DELETE.{stream}"));
    assert_eq!(v["success"], true, "delete {stream}: {v}");

    // parti notices and recreates it.
    assert!(
        wait_until(Duration::from_secs(10), || created(&url, &stream)
            .is_some_and(|c| c != before)),
        "{which} bucket not recreated: {}",
        describe(&ms)
    );
    let recreated = t0.elapsed();
    // A joiner after the loss gets work, and so does everyone else. It may
    // start before the running workers have written their keys again: it
    // must not take one of their IDs (they would lose it and stop).
    ms.push(start_recorded(&url, &group, N, &config, true));
    let bound = store_bound(&config);
    let healed = wait_until(Duration::from_secs(30), || recorded_settled(&ms, N));
    let settled = t0.elapsed();
    eprintln!(
        "{which} bucket deleted: recreated after {recreated:?}, five workers settled after {settled:?} (bound {bound:?} + the joiner's window)"
    );
    assert!(healed, "after deleting {which}: {}", describe(&ms));
    // And the group still fails over: the leader stops, another one leads.
    let t1 = Instant::now();
    let gone = stop_the_leader(&mut ms);
    assert!(
        wait_until(Duration::from_secs(20), || recorded_settled(&ms, N)),
        "after the leader left: {}",
        describe(&ms)
    );
    eprintln!(
        "{which}: leader change after the loss settled in {:?}",
        t1.elapsed()
    );
    stopped.push(gone);
    let reported: Vec<String> = ms
        .iter()
        .chain(&stopped)
        .flat_map(|r| r.errors.lock().unwrap().clone())
        .filter(|e| e.contains("recreated"))
        .collect();
    assert!(!reported.is_empty(), "nobody reported the recreated bucket");
    assert_single_owners_and_rising_tokens(ms.iter().chain(&stopped), N);
    for r in ms {
        r.manager.stop().expect("stop");
    }
}

#[test]
fn a_server_back_on_an_empty_store_heals() {
    let mut server = NatsServer::start();
    let url = server.url();
    let group = "loss-all";
    let config: Config = fast_config();
    let (mut ms, first) = group_after_a_leader_change(&url, group, &config);
    let stopped = [first];
    let t0 = Instant::now();
    server.restart_empty();
    let streams = ["workers", "leader", "assignments"].map(|b| format!("KV_parti-{group}-{b}"));
    assert!(
        wait_until(Duration::from_secs(10), || streams
            .iter()
            .all(|s| created(&url, s).is_some())),
        "buckets not recreated: {}",
        describe(&ms)
    );
    let recreated = t0.elapsed();
    ms.push(start_recorded(&url, group, N, &config, true));
    let healed = wait_until(Duration::from_secs(30), || recorded_settled(&ms, N));
    eprintln!(
        "server back on an empty store: buckets recreated after {recreated:?}, five workers settled after {:?}",
        t0.elapsed()
    );
    assert!(healed, "after the empty restart: {}", describe(&ms));
    assert_single_owners_and_rising_tokens(ms.iter().chain(&stopped), N);
    for r in ms {
        r.manager.stop().expect("stop");
    }
}

#[test]
fn deleting_the_workers_bucket_heals() {
    bucket_loss("workers");
}

#[test]
fn deleting_the_assignments_bucket_heals() {
    bucket_loss("assignments");
}

#[test]
fn deleting_the_leader_bucket_heals() {
    bucket_loss("leader");
}
