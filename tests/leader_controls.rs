//! The leader's controls on real NATS: `refresh_partitions()` from a
//! follower, the rebalance cooldown, and the 3 × cap of the planned window.
//! Rebalance moments are read from the leader's own callbacks (it gives up
//! partitions first at every planned rebalance: revoke before grant).
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use group::{fast_config, partitions, start_recorded, unix_micros, wait_until, Event, Recorded};
use parti::source::FnSource;
use parti::{Config, Manager, Partition};
use support::NatsServer;

fn ids(m: &Manager) -> BTreeSet<String> {
    m.assignment()
        .partitions()
        .iter()
        .map(|p| p.id().to_string())
        .collect()
}

/// Wall-clock micros of each callback of `r` that removed partitions.
fn revokes(r: &Recorded) -> Vec<u64> {
    r.events
        .lock()
        .unwrap()
        .iter()
        .filter(|e: &&Event| e["removed"].as_array().is_some_and(|a| !a.is_empty()))
        .filter_map(|e| e["t_begin"].as_u64())
        .collect()
}

fn secs(micros: u64) -> f64 {
    micros as f64 / 1e6
}

#[test]
fn refresh_from_a_follower_makes_the_leader_reread_the_source() {
    let server = NatsServer::start();
    let config = fast_config();
    let list: Arc<Mutex<Vec<Partition>>> = Arc::new(Mutex::new(partitions(6)));
    let start = |name: &str| {
        let l = list.clone();
        let nc = parti::store::nats::connect(&server.url()).expect("connect");
        let m = Manager::builder(nc, "refresh")
            .config(config.clone())
            .partitions(FnSource::new(move || Ok(l.lock().unwrap().clone())))
            .start()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        m
    };
    let first = start("first");
    let second = start("second");
    let everything = |want: &BTreeSet<String>| {
        let mut union = ids(&first);
        union.extend(ids(&second));
        &union == want
    };
    let old: BTreeSet<String> = (0..6).map(|i| format!("p{i}")).collect();
    assert!(
        wait_until(Duration::from_secs(10), || everything(&old)
            && !ids(&first).is_empty()
            && !ids(&second).is_empty()),
        "first {:?}, second {:?}",
        ids(&first),
        ids(&second)
    );
    let (leader, follower) = if first.is_leader() {
        (&first, &second)
    } else {
        (&second, &first)
    };
    assert!(leader.is_leader() && !follower.is_leader());

    // The source changes; nobody re-reads it on their own (no
    // `refresh_every`, an FnSource cannot signal changes).
    list.lock().unwrap().push(Partition::new("p-new"));
    let mut new = old.clone();
    new.insert("p-new".to_string());
    assert!(
        !wait_until(Duration::from_secs(1), || everything(&new)),
        "picked up without a refresh"
    );

    follower
        .refresh_partitions()
        .expect("refresh from the follower");
    assert!(
        wait_until(Duration::from_secs(5), || everything(&new)),
        "leader {:?}, follower {:?}",
        ids(leader),
        ids(follower)
    );
    first.stop().expect("stop");
    second.stop().expect("stop");
}

#[test]
fn a_join_inside_the_cooldown_waits_for_it() {
    let server = NatsServer::start();
    let cooldown = Duration::from_secs(3);
    let config = Config {
        cold_start_window: Duration::from_millis(500),
        planned_scale_window: Duration::from_millis(300),
        rebalance_cooldown: cooldown,
        ..fast_config()
    };
    let leader = start_recorded(&server.url(), "cooldown", 12, &config, false);
    assert!(leader.manager.is_leader());
    assert_eq!(leader.manager.assignment().len(), 12);

    let a = start_recorded(&server.url(), "cooldown", 12, &config, true);
    assert!(
        wait_until(Duration::from_secs(10), || !revokes(&leader).is_empty()),
        "no rebalance for the first join"
    );
    let first = revokes(&leader)[0];
    // The second join comes right after the first rebalance, well inside
    // the cooldown: its window (300 ms) ends long before the cooldown does.
    let b = start_recorded(&server.url(), "cooldown", 12, &config, true);
    let joined = unix_micros();
    assert!(
        wait_until(cooldown * 3, || revokes(&leader)
            .iter()
            .any(|&t| t > joined)),
        "no rebalance for the second join"
    );
    let second = revokes(&leader)
        .into_iter()
        .find(|&t| t > joined)
        .unwrap_or_default();
    let gap = Duration::from_micros(second - first);
    eprintln!(
        "first rebalance {:.3}, second join {:.3}, second rebalance {:.3}: {gap:?} apart",
        secs(first),
        secs(joined),
        secs(second)
    );
    // The same callback latency is in both moments; 100 ms of slack.
    assert!(
        gap + Duration::from_millis(100) >= cooldown,
        "second rebalance only {gap:?} after the first (cooldown {cooldown:?})"
    );
    assert!(
        gap <= cooldown + Duration::from_secs(2),
        "second rebalance {gap:?} after the first"
    );
    for m in [&b.manager, &a.manager, &leader.manager] {
        m.stop().expect("stop");
    }
}

#[test]
fn joins_that_keep_restarting_the_window_wait_at_most_three_windows() {
    let server = NatsServer::start();
    let window = Duration::from_millis(1000);
    let config = Config {
        cold_start_window: Duration::from_millis(500),
        planned_scale_window: window,
        rebalance_cooldown: Duration::from_millis(100),
        ..fast_config()
    };
    let leader = start_recorded(&server.url(), "window-cap", 12, &config, false);
    assert!(leader.manager.is_leader());

    // A join every 600 ms (< window) until well past 3 windows: each one
    // restarts the window, so only the cap lets the rebalance happen.
    let every = Duration::from_millis(600);
    let t0 = Instant::now();
    let t0_micros = unix_micros();
    let until = window * 3 + Duration::from_millis(1200);
    let mut joiners = Vec::new();
    let mut last_join = t0;
    while t0.elapsed() < until {
        joiners.push(start_recorded(
            &server.url(),
            "window-cap",
            12,
            &config,
            true,
        ));
        last_join = Instant::now();
        let next = t0 + every * joiners.len() as u32;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    assert!(
        wait_until(Duration::from_secs(5), || !revokes(&leader).is_empty()),
        "no rebalance at all"
    );
    let at = Duration::from_micros(revokes(&leader)[0] - t0_micros);
    eprintln!(
        "{} joins every {every:?} over {:?}; first rebalance {at:?} after the first join",
        joiners.len(),
        last_join - t0
    );
    // Not after one window (the window was restarted), but by 3 windows.
    assert!(
        at >= window * 2,
        "rebalanced {at:?} after the first join: the window was not restarted"
    );
    assert!(
        at <= window * 3 + Duration::from_millis(800),
        "rebalanced only {at:?} after the first join (cap {:?})",
        window * 3
    );
    // And the joins went on past that moment: the cap, not a pause, ended it.
    assert!(last_join - t0 > at, "joins stopped at {:?}", last_join - t0);
    for j in &joiners {
        j.manager.stop().expect("stop");
    }
    leader.manager.stop().expect("stop");
}
