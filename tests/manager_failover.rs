//! Failures on a real nats-server with workers in child processes killed with
//! SIGKILL: a worker crash, a leader crash, and a whole-fleet restart.

mod group;
mod support;

use std::time::{Duration, Instant};

use group::{exactly_once, fast_config, wait_until, ChildWorker, Observer};
use parti::{RebalanceKind, State};
use support::NatsServer;

const N: usize = 30;

fn spawn_group(server: &NatsServer, group: &str, count: usize) -> Vec<ChildWorker> {
    let config = fast_config();
    let workers: Vec<ChildWorker> = (0..count)
        .map(|_| ChildWorker::spawn(&server.url(), group, N, &config, None))
        .collect();
    for w in &workers {
        w.wait_started(Duration::from_secs(20));
    }
    assert!(
        wait_until(Duration::from_secs(10), || exactly_once(
            &reports(&workers),
            N
        )),
        "initial assignment: {:?}",
        reports(&workers)
    );
    workers
}

fn reports(workers: &[ChildWorker]) -> Vec<(String, Vec<String>)> {
    workers
        .iter()
        .map(|w| (w.worker_id().unwrap_or_default(), w.partitions()))
        .collect()
}

#[test]
fn crashed_worker_partitions_move_within_ttl_plus_grace() {
    let server = NatsServer::start();
    let config = fast_config();
    let mut workers = spawn_group(&server, "crash", 3);
    let victim = workers
        .iter()
        .position(|w| !w.is_leader())
        .expect("a follower");
    let mut dead = workers.remove(victim);
    let t0 = Instant::now();
    dead.kill();
    let bound = config.heartbeat_ttl + config.emergency_grace + Duration::from_secs(1);
    assert!(
        wait_until(bound, || exactly_once(&reports(&workers), N)),
        "survivors own everything within {bound:?}: {:?}",
        reports(&workers)
    );
    eprintln!("crash failover took {:?} (bound {bound:?})", t0.elapsed());
    let leader = workers.iter().find(|w| w.is_leader()).expect("leader");
    assert!(leader.saw_state(State::Emergency), "{:?}", leader.events());
}

#[test]
fn leader_crash_elects_a_new_leader_and_versions_keep_increasing() {
    let server = NatsServer::start();
    let config = fast_config();
    let mut workers = spawn_group(&server, "leadercrash", 3);
    let leader = workers
        .iter()
        .position(|w| w.is_leader())
        .expect("a leader");
    let mut dead = workers.remove(leader);
    let t0 = Instant::now();
    dead.kill();
    let bound = config.election_ttl + Duration::from_secs(1);
    assert!(
        wait_until(bound, || workers.iter().filter(|w| w.is_leader()).count()
            == 1),
        "a new leader within {bound:?}"
    );
    eprintln!("leader failover took {:?} (bound {bound:?})", t0.elapsed());
    let bound = config.election_ttl
        + config.heartbeat_ttl
        + config.emergency_grace
        + Duration::from_secs(2);
    assert!(
        wait_until(bound, || exactly_once(&reports(&workers), N)),
        "no partition lost: {:?}",
        reports(&workers)
    );
    for w in &workers {
        let v = w.versions();
        assert!(
            v.windows(2).all(|p| p[0] < p[1]),
            "versions increase: {v:?}"
        );
    }
    assert_eq!(workers.iter().filter(|w| w.is_leader()).count(), 1);
}

#[test]
fn fleet_restart_is_one_cold_start_not_a_storm() {
    let server = NatsServer::start();
    let observer = Observer::new(&server.url(), "restart");
    let mut workers = spawn_group(&server, "restart", 6);
    let before = observer.rebalances().len();
    for w in &mut workers {
        w.kill();
    }
    drop(workers);
    let workers = spawn_group(&server, "restart", 6);
    assert!(wait_until(Duration::from_secs(10), || {
        workers.iter().any(|w| w.is_leader()) && exactly_once(&reports(&workers), N)
    }));
    let after: Vec<RebalanceKind> = observer.rebalances()[before..].to_vec();
    assert_eq!(
        after,
        vec![RebalanceKind::Restart],
        "one restart rebalance, no storm"
    );
}
