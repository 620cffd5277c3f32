//! The server rolled back to an older copy of its store under a running
//! group: acknowledged writes lost, revisions issued again (what a server
//! without `sync_interval: always` can come back as after a correlated
//! crash). The group must heal by itself, never own a partition twice, and
//! hand out fencing tokens a downstream store keeping the highest token per
//! partition never rejects.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::time::{Duration, Instant};

use group::store_faults::{describe, group_after_a_leader_change, stop_the_leader, store_bound, N};
use group::tokens::assert_single_owners_and_rising_tokens;
use group::{fast_config, recorded_settled, start_recorded, Recorded};
use parti::Config;
use support::{wait_until, NatsServer};

/// Stops the leader and lets two workers join, so that the store's
/// revisions, the lease epoch and the assignment versions all move past
/// the copy.
fn run_on(url: &str, group: &str, config: &Config, ms: &mut Vec<Recorded>) -> Recorded {
    let gone = stop_the_leader(ms);
    for _ in 0..2 {
        ms.push(start_recorded(url, group, N, config, true));
    }
    assert!(
        wait_until(Duration::from_secs(20), || recorded_settled(ms, N)),
        "after the run on: {}",
        describe(ms)
    );
    gone
}

#[test]
fn a_server_rolled_back_to_an_older_store_heals_without_double_owners_or_lower_tokens() {
    let mut server = NatsServer::start();
    let url = server.url();
    let group = "rollback";
    let config: Config = fast_config();
    let (mut ms, first) = group_after_a_leader_change(&url, group, &config);
    let mut stopped = vec![first];
    let copy = tempfile::tempdir().expect("a directory for the copy");
    server.copy_store(copy.path());
    assert!(
        wait_until(Duration::from_secs(20), || recorded_settled(&ms, N)),
        "after the copy's restart: {}",
        describe(&ms)
    );
    stopped.push(run_on(&url, group, &config, &mut ms));
    let versions_before: Vec<u64> = ms
        .iter()
        .map(|r| r.manager.assignment().version())
        .collect();

    server.restore_store(copy.path());
    // From when the server answers again.
    let t0 = Instant::now();
    let bound = store_bound(&config);
    let healed = wait_until(Duration::from_secs(30), || {
        recorded_settled(&ms, N)
            && ms
                .iter()
                .zip(&versions_before)
                .all(|(r, v)| r.manager.assignment().version() > *v)
    });
    let settled = t0.elapsed();
    eprintln!("rolled back: every partition owned again after {settled:?} (bound {bound:?})");
    assert!(healed, "after the rollback: {}", describe(&ms));
    // A joiner after the rollback gets work too.
    ms.push(start_recorded(&url, group, N, &config, true));
    assert!(
        wait_until(Duration::from_secs(20), || recorded_settled(&ms, N)),
        "a joiner after the rollback: {}",
        describe(&ms)
    );
    assert_single_owners_and_rising_tokens(ms.iter().chain(&stopped), N);
    let reported: Vec<String> = ms
        .iter()
        .flat_map(|r| r.errors.lock().unwrap().clone())
        .filter(|e| e.contains("store forgot"))
        .collect();
    eprintln!("reported: {reported:?}");
    assert!(!reported.is_empty(), "nobody reported the rollback");
    let seen = ms
        .iter()
        .filter_map(|r| r.manager.health().store_fault)
        .count();
    assert!(seen > 0, "no health() shows the store fault");
    for r in ms {
        r.manager.stop().expect("stop");
    }
}
