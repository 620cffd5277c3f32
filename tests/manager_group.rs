//! The Manager end to end on a real nats-server, in one process: cold start,
//! planned scaling, simultaneous starts, graceful stop, invalid input.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use group::{exactly_once, fast_config, manager_report, start_manager, wait_until, Observer};
use parti::source::StaticSource;
use parti::{Config, Error, Manager, RebalanceKind, State};
use support::NatsServer;

const N: usize = 24;

fn start_many(
    url: &str,
    group: &str,
    count: usize,
    config: &parti::Config,
) -> Vec<(Manager, group::StateLog)> {
    let barrier = Arc::new(Barrier::new(count));
    let handles: Vec<_> = (0..count)
        .map(|_| {
            let (url, group, config, barrier) = (
                url.to_string(),
                group.to_string(),
                config.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                start_manager(&url, &group, N, &config)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("start thread"))
        .collect()
}

#[test]
fn cold_start_of_three_workers() {
    let server = NatsServer::start();
    let config = fast_config();
    let t0 = Instant::now();
    let ms = start_many(&server.url(), "cold", 3, &config);
    assert!(
        t0.elapsed() >= config.cold_start_window,
        "first assignment only after the cold-start window ({:?})",
        t0.elapsed()
    );
    let refs: Vec<&Manager> = ms.iter().map(|(m, _)| m).collect();
    assert!(wait_until(Duration::from_secs(5), || exactly_once(
        &manager_report(&refs),
        N
    )));
    assert_eq!(refs.iter().filter(|m| m.is_leader()).count(), 1);
    for (m, log) in &ms {
        // The log is written by the callback thread, a moment after the
        // state itself changes.
        assert!(wait_until(Duration::from_secs(5), || log.states().last()
            == Some(&State::Stable)));
        assert_eq!(
            log.states(),
            vec![
                State::Init,
                State::ClaimingId,
                State::Election,
                State::WaitingAssignment,
                State::Stable
            ],
            "states of {}",
            m.worker_id()
        );
    }
}

#[test]
fn scale_three_to_five() {
    let server = NatsServer::start();
    let config = fast_config();
    let observer = Observer::new(&server.url(), "scale");
    let mut ms = start_many(&server.url(), "scale", 3, &config);
    {
        let refs: Vec<&Manager> = ms.iter().map(|(m, _)| m).collect();
        assert!(wait_until(Duration::from_secs(5), || exactly_once(
            &manager_report(&refs),
            N
        )));
    }
    let leader = ms
        .iter()
        .position(|(m, _)| m.is_leader())
        .expect("a leader");
    let before = ms[leader].1.states().len();
    let joined_at = Instant::now();
    ms.extend(start_many(&server.url(), "scale", 2, &config));
    let refs: Vec<&Manager> = ms.iter().map(|(m, _)| m).collect();
    assert!(wait_until(Duration::from_secs(10), || {
        exactly_once(&manager_report(&refs), N) && refs.iter().all(|m| !m.assignment().is_empty())
    }));
    let leader_states = ms[leader].1.states()[before..].to_vec();
    let scaling = leader_states
        .iter()
        .position(|s| *s == State::Scaling)
        .expect("Scaling on the leader");
    let rebalancing = leader_states
        .iter()
        .position(|s| *s == State::Rebalancing)
        .expect("Rebalancing on the leader");
    assert!(scaling < rebalancing, "{leader_states:?}");
    let planned = observer
        .timed_metas()
        .into_iter()
        .find(|(_, m)| m.reason == RebalanceKind::PlannedScale)
        .expect("a planned-scale version");
    assert!(
        planned.0 - joined_at >= config.planned_scale_window,
        "published {:?} after the join, window {:?}",
        planned.0 - joined_at,
        config.planned_scale_window
    );
    assert!(wait_until(Duration::from_secs(5), || ms[leader].0.state()
        == State::Stable));
}

#[test]
fn five_workers_started_at_the_same_instant() {
    let server = NatsServer::start();
    let ms = start_many(&server.url(), "herd", 5, &fast_config());
    let ids: BTreeSet<&str> = ms.iter().map(|(m, _)| m.worker_id()).collect();
    assert_eq!(ids.len(), 5, "distinct ids: {ids:?}");
    let refs: Vec<&Manager> = ms.iter().map(|(m, _)| m).collect();
    assert!(wait_until(Duration::from_secs(5), || exactly_once(
        &manager_report(&refs),
        N
    )));
    // Exactly one leader, and it stays that way.
    for _ in 0..10 {
        assert_eq!(refs.iter().filter(|m| m.is_leader()).count(), 1);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn graceful_stop_moves_partitions_at_once() {
    let server = NatsServer::start();
    let config = fast_config();
    let ms = start_many(&server.url(), "drain", 3, &config);
    let refs: Vec<&Manager> = ms.iter().map(|(m, _)| m).collect();
    assert!(wait_until(Duration::from_secs(5), || exactly_once(
        &manager_report(&refs),
        N
    )));
    // Stop a follower (a leader hand-over is covered elsewhere).
    let victim = ms
        .iter()
        .position(|(m, _)| !m.is_leader())
        .expect("a follower");
    let t0 = Instant::now();
    ms[victim].0.stop().expect("stop");
    let rest: Vec<&Manager> = ms
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, (m, _))| m)
        .collect();
    assert!(wait_until(Duration::from_secs(5), || exactly_once(
        &manager_report(&rest),
        N
    )));
    let took = t0.elapsed();
    let crash_detection = config.heartbeat_ttl + config.emergency_grace;
    assert!(
        took < crash_detection,
        "moved in {took:?}, faster than crash detection ({crash_detection:?})"
    );
    assert!(ms[victim].0.assignment().is_empty());
    assert_eq!(ms[victim].0.state(), State::Shutdown);
}

fn stream_names(url: &str) -> Vec<String> {
    let nc = nats::connect(url).expect("connect");
    let reply = nc
        .request_timeout("$JS.API.STREAM.NAMES", b"{}", Duration::from_secs(2))
        .expect("stream names");
    let v: serde_json::Value = serde_json::from_slice(&reply.data).expect("json");
    v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn invalid_config_and_names_are_typed_errors_and_write_nothing() {
    let server = NatsServer::start();
    let connect = || parti::store::nats::connect(&server.url()).expect("connect");
    for bad in ["", "has space", "dots.not.allowed", "star*", "gt>"] {
        match Manager::builder(connect(), bad).start() {
            Err(Error::InvalidName { name, .. }) => assert_eq!(name, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let bad_configs = [
        (
            "heartbeat_ttl",
            // Both set: a defaulted interval would follow the TTL instead.
            Config {
                heartbeat_interval: Duration::from_secs(1),
                heartbeat_ttl: Duration::from_millis(1500),
                ..Config::default()
            },
        ),
        (
            "restart_ratio",
            Config {
                restart_ratio: 0.0,
                ..Config::default()
            },
        ),
        (
            "heartbeat_interval",
            Config {
                heartbeat_interval: Duration::ZERO,
                ..Config::default()
            },
        ),
    ];
    for (field, config) in bad_configs {
        match Manager::builder(connect(), "fine").config(config).start() {
            Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    match Manager::builder(connect(), "fine")
        .config(fast_config())
        .preferred_id("worker-x")
        .partitions(StaticSource::default())
        .start()
    {
        Err(Error::InvalidName { .. }) => {}
        other => panic!("preferred id: {other:?}"),
    }
    assert!(
        stream_names(&server.url()).is_empty(),
        "nothing written: {:?}",
        stream_names(&server.url())
    );
}
