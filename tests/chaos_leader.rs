//! Chaos around the leader, on a real nats-server with workers in child
//! processes: repeated SIGKILLs, a frozen leader, a split brain through a cut
//! connection, and leaders dying in the middle of their work.

mod group;
mod support;

use std::time::{Duration, Instant};

use group::*;
use support::{NatsServer, TcpProxy};

const N: usize = 40;

fn spawn(url: &str, group: &str) -> ChildWorker {
    ChildWorker::spawn(url, group, N, &fast_config(), None)
}

fn spawn_slow_release(url: &str, group: &str, ms: u64) -> ChildWorker {
    ChildWorker::spawn_with(
        url,
        group,
        N,
        &fast_config(),
        None,
        &["--release-ms", &ms.to_string()],
    )
}

/// Starts `count` child workers and waits until they settle.
fn start_group(server_url: &str, group: &str, count: usize) -> Vec<ChildWorker> {
    let workers: Vec<ChildWorker> = (0..count).map(|_| spawn(server_url, group)).collect();
    for w in &workers {
        w.wait_started(Duration::from_secs(30));
    }
    assert_settles(&workers, N, Duration::from_secs(20), "the group");
    workers
}

#[test]
fn killing_the_leader_every_few_seconds_for_a_minute() {
    let server = NatsServer::start();
    let config = fast_config();
    let mut workers = start_group(&server.url(), "killloop", 5);
    let t0 = Instant::now();
    let mut kills = 0;
    while t0.elapsed() < Duration::from_secs(60) && kills < 15 {
        let Some(i) = workers
            .iter()
            .position(|w| w.killed_at.is_none() && w.is_leader())
        else {
            assert!(
                wait_until(config.election_ttl * 3, || leaders(&live(&workers)) == 1),
                "no leader"
            );
            continue;
        };
        workers[i].kill();
        kills += 1;
        workers.push(spawn(&server.url(), "killloop"));
        let bound = config.election_ttl + Duration::from_secs(1);
        assert!(
            wait_until(bound, || leaders(&live(&workers)) == 1),
            "kill {kills}: a new leader within {bound:?}"
        );
        // A few seconds of peace before the next kill.
        std::thread::sleep(Duration::from_secs(3));
    }
    assert!(kills >= 10, "only {kills} kills in a minute");
    assert_settles(
        &workers,
        N,
        Duration::from_secs(20),
        "ends stable with one leader and every partition owned",
    );
}

#[test]
fn a_frozen_leader_publishes_nothing_after_losing_its_lease() {
    let server = NatsServer::start();
    let config = fast_config();
    let observer = Observer::new(&server.url(), "freeze");
    let workers = start_group(&server.url(), "freeze", 3);
    let old = workers.iter().position(|w| w.is_leader()).expect("leader");
    let old_epoch = observer
        .writes()
        .iter()
        .map(|(_, _, r)| r.epoch)
        .max()
        .expect("writes");
    workers[old].signal("STOP");
    let others: Vec<&ChildWorker> = workers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != old)
        .map(|(_, w)| w)
        .collect();
    assert!(wait_until(
        config.election_ttl + Duration::from_secs(2),
        || leaders(&others) == 1
    ));
    // The new leader declares the frozen one dead and publishes.
    assert!(wait_until(Duration::from_secs(10), || observer
        .writes()
        .iter()
        .any(|(_, _, r)| r.epoch > old_epoch)));
    let new_epoch_at = observer
        .writes()
        .iter()
        .find(|(_, _, r)| r.epoch > old_epoch)
        .map(|(t, _, _)| *t)
        .unwrap();
    workers[old].signal("CONT");
    // It notices it lost the lease and steps down.
    assert!(wait_until(Duration::from_secs(10), || !workers[old].is_leader()));
    assert_settles(&workers, N, Duration::from_secs(20), "the group");
    let stale: Vec<_> = observer
        .writes()
        .into_iter()
        .filter(|(t, _, r)| *t > new_epoch_at && r.epoch <= old_epoch)
        .collect();
    assert!(stale.is_empty(), "the deposed leader published: {stale:?}");
}

#[test]
fn split_brain_through_a_cut_connection_heals_to_one_leader() {
    let server = NatsServer::start();
    let config = fast_config();
    let observer = Observer::new(&server.url(), "split");
    let proxy = TcpProxy::start(server.addr());
    // The proxied worker starts first, so it leads.
    let mut workers = vec![spawn(&proxy.url(), "split")];
    workers[0].wait_started(Duration::from_secs(30));
    workers.push(spawn(&server.url(), "split"));
    workers.push(spawn(&server.url(), "split"));
    assert_settles(&workers, N, Duration::from_secs(30), "the group");
    assert!(workers[0].is_leader(), "the proxied worker leads");
    // A slow link first: no thrash.
    let version = observer.last_version();
    proxy.set_delay(Duration::from_millis(40));
    std::thread::sleep(config.heartbeat_ttl * 3);
    proxy.set_delay(Duration::ZERO);
    assert_eq!(
        observer.last_version(),
        version,
        "a slow link caused a rebalance"
    );
    // Now cut it off past its lease.
    let old_epoch = observer
        .writes()
        .iter()
        .map(|(_, _, r)| r.epoch)
        .max()
        .unwrap();
    proxy.cut();
    let others: Vec<&ChildWorker> = workers[1..].iter().collect();
    assert!(wait_until(
        config.election_ttl + Duration::from_secs(2),
        || others.iter().any(|w| w.is_leader())
    ));
    assert!(wait_until(Duration::from_secs(10), || exactly_once(
        &child_reports(&others),
        N
    )));
    assert!(
        wait_until(Duration::from_secs(5), || !workers[0].is_leader()),
        "old leader stepped down"
    );
    let cut_epoch_at = observer
        .writes()
        .iter()
        .find(|(_, _, r)| r.epoch > old_epoch)
        .map(|(t, _, _)| *t)
        .unwrap();
    proxy.restore();
    assert_settles(&workers, N, Duration::from_secs(30), "the group");
    assert_eq!(leaders(&live(&workers)), 1);
    let stale: Vec<_> = observer
        .writes()
        .into_iter()
        .filter(|(t, _, r)| *t > cut_epoch_at && r.epoch <= old_epoch)
        .collect();
    assert!(stale.is_empty(), "the cut-off leader published: {stale:?}");
}

#[test]
fn leader_killed_during_a_scaling_window() {
    let server = NatsServer::start();
    let mut workers = start_group(&server.url(), "killscale", 3);
    workers.push(spawn(&server.url(), "killscale"));
    workers.push(spawn(&server.url(), "killscale"));
    // Inside the planned window (joiners seen, nothing published yet).
    std::thread::sleep(fast_config().planned_scale_window / 2);
    let leader = workers.iter().position(|w| w.is_leader()).unwrap();
    workers[leader].kill();
    assert_settles(&workers, N, Duration::from_secs(30), "the group");
}

#[test]
fn leader_killed_during_a_rebalance() {
    let server = NatsServer::start();
    // Slow releases keep the handoff open long enough to kill the leader in
    // the middle of it.
    let mut workers: Vec<ChildWorker> = (0..3)
        .map(|_| spawn_slow_release(&server.url(), "killrebal", 1500))
        .collect();
    assert_settles(&workers, N, Duration::from_secs(30), "the group");
    let leader = workers.iter().position(|w| w.is_leader()).unwrap();
    workers.push(spawn_slow_release(&server.url(), "killrebal", 1500));
    assert!(
        wait_until(Duration::from_secs(10), || workers[leader]
            .saw_state(parti::State::Rebalancing)),
        "the leader starts handing over"
    );
    workers[leader].kill();
    assert_settles(&workers, N, Duration::from_secs(30), "the group");
}

#[test]
fn leader_killed_during_an_emergency() {
    let server = NatsServer::start();
    let config = fast_config();
    let mut workers = start_group(&server.url(), "killemerg", 4);
    let follower = workers.iter().position(|w| !w.is_leader()).unwrap();
    let leader = workers.iter().position(|w| w.is_leader()).unwrap();
    workers[follower].kill();
    // Kill the leader right when it declares the follower dead.
    std::thread::sleep(config.heartbeat_ttl + config.emergency_grace);
    workers[leader].kill();
    assert_settles(&workers, N, Duration::from_secs(30), "the group");
}
