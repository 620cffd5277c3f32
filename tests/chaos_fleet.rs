//! Chaos across the fleet on a real nats-server: mass kills and a thundering
//! herd, a gray failure, a minute of churn, a rolling update with preferred
//! IDs, rapid scaling and a quiet minute.

mod group;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use group::ledger::Ledger;
use group::*;
use support::NatsServer;

const N: usize = 40;

#[test]
fn eighty_percent_killed_then_a_thundering_herd() {
    let server = NatsServer::start();
    let config = fast_config();
    let mut workers: Vec<ChildWorker> = (0..10)
        .map(|_| ChildWorker::spawn(&server.url(), "herd", N, &config, None))
        .collect();
    assert_settles(&workers, N, Duration::from_secs(30), "the group");
    for w in workers.iter_mut().take(8) {
        w.kill();
    }
    assert_settles(
        &workers,
        N,
        Duration::from_secs(30),
        "two survivors own everything",
    );
    // Everyone dies, and ten new processes start within 100 ms.
    for w in workers.iter_mut() {
        w.kill();
    }
    let t0 = Instant::now();
    let herd: Vec<ChildWorker> = (0..10)
        .map(|_| ChildWorker::spawn(&server.url(), "herd", N, &config, None))
        .collect();
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "spawned in {:?}",
        t0.elapsed()
    );
    let ids: std::collections::BTreeSet<String> = herd
        .iter()
        .map(|w| w.wait_started(Duration::from_secs(30)))
        .collect();
    assert_eq!(ids.len(), 10, "distinct IDs");
    assert_settles(&herd, N, Duration::from_secs(30), "the group");
}

#[test]
fn gray_failure_slow_heartbeats_cause_no_thrash() {
    let server = NatsServer::start();
    let config = fast_config();
    let observer = Observer::new(&server.url(), "gray");
    // One worker beats only every 700 ms: just under the group's 800 ms TTL
    // (its own TTL is longer, so the config is valid and it does not fence
    // itself). The leader must not declare it dead, and nothing may move.
    let slow = parti::Config {
        heartbeat_interval: Duration::from_millis(700),
        heartbeat_ttl: Duration::from_millis(1600),
        ..config.clone()
    };
    let mut workers: Vec<ChildWorker> = (0..2)
        .map(|_| ChildWorker::spawn(&server.url(), "gray", N, &config, None))
        .collect();
    for w in &workers {
        w.wait_started(Duration::from_secs(30));
    }
    workers.push(ChildWorker::spawn(&server.url(), "gray", N, &slow, None));
    assert_settles(&workers, N, Duration::from_secs(30), "the group");
    assert!(!workers[2].is_leader());
    let version = workers.iter().flat_map(|w| w.versions()).max().unwrap_or(0);
    assert!(wait_until(Duration::from_secs(5), || observer
        .last_version()
        >= version));
    let version = observer.last_version();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(8) {
        assert_eq!(
            observer.last_version(),
            version,
            "a slow worker caused a rebalance"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !workers[2].saw_state(parti::State::Degraded),
        "the slow worker fenced itself"
    );
    assert!(children_settled(&live(&workers), N));
}

#[test]
fn rolling_update_with_preferred_ids_keeps_partitions_in_place() {
    let server = NatsServer::start();
    let config = fast_config();
    let ids: Vec<String> = (0..4).map(|i| format!("worker-{i}")).collect();
    let mut workers: Vec<ChildWorker> = ids
        .iter()
        .map(|id| ChildWorker::spawn(&server.url(), "rolling", N, &config, Some(id)))
        .collect();
    assert_settles(&workers, N, Duration::from_secs(30), "the group");
    let by_id = |ws: &[&ChildWorker]| -> BTreeMap<String, String> {
        ws.iter()
            .flat_map(|w| {
                let id = w.worker_id().unwrap_or_default();
                w.partitions().into_iter().map(move |p| (p, id.clone()))
            })
            .collect()
    };
    let before = by_id(&live(&workers));
    let from = unix_micros();
    let mut old = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        assert!(
            workers[i].stop(Duration::from_secs(10)),
            "graceful stop of {id}"
        );
        let replacement = ChildWorker::spawn(&server.url(), "rolling", N, &config, Some(id));
        assert_eq!(replacement.wait_started(Duration::from_secs(30)), *id);
        old.push(std::mem::replace(&mut workers[i], replacement));
        assert_settles(&workers, N, Duration::from_secs(30), "the group");
    }
    let after = by_id(&live(&workers));
    let kept = before
        .iter()
        .filter(|(p, w)| after.get(*p) == Some(w))
        .count();
    eprintln!("rolling update: {kept}/{N} partitions on the same worker id");
    assert!(
        kept * 100 >= N * 95,
        "only {kept}/{N} stayed\nbefore: {before:?}\nafter: {after:?}"
    );
    let mut all: Vec<&ChildWorker> = old.iter().collect();
    all.extend(workers.iter());
    let ledger = Ledger::of(&all);
    assert!(ledger.overlaps().is_empty(), "{:?}", ledger.overlaps());
    let ids_all: Vec<String> = (0..N).map(|i| format!("p{i}")).collect();
    let (gap, partition, at) = ledger.longest_gap(&ids_all, from, unix_micros());
    eprintln!(
        "rolling update: longest unowned {} ms ({partition} from {} ms)",
        gap / 1000,
        (at / 1000) % 100_000
    );
    assert!(
        gap < config.planned_scale_window.as_micros() as u64,
        "unowned for {gap} µs"
    );
}

#[test]
fn rapid_scaling_then_a_quiet_minute() {
    let server = NatsServer::start();
    let config = fast_config();
    let observer = Observer::new(&server.url(), "rapid");
    let mut ms: Vec<Recorded> = (0..10)
        .map(|_| start_recorded(&server.url(), "rapid", N, &config, true))
        .collect();
    let mut gone = Vec::new();
    assert!(wait_until(Duration::from_secs(30), || recorded_settled(
        &ms, N
    )));
    for cycle in 0..3 {
        let handles: Vec<_> = (0..40)
            .map(|_| {
                let (url, config) = (server.url(), config.clone());
                std::thread::spawn(move || start_recorded(&url, "rapid", N, &config, true))
            })
            .collect();
        ms.extend(handles.into_iter().map(|h| h.join().expect("start")));
        // 50 workers, 40 partitions: settled = exactly once, one leader.
        assert!(
            wait_until(Duration::from_secs(60), || {
                let r = recorded_reports(&ms);
                exactly_once(&r, N)
                    && ms.iter().filter(|m| m.manager.is_leader()).count() == 1
                    && r.iter().filter(|(_, p)| !p.is_empty()).count() == N
            }),
            "cycle {cycle}: up to 50"
        );
        // Scale back to 10, keeping the leader.
        let mut stopping = Vec::new();
        let mut i = 0;
        while ms.len() > 10 {
            if ms[i].manager.is_leader() {
                i += 1;
                continue;
            }
            stopping.push(ms.remove(i));
        }
        let handles: Vec<_> = stopping
            .into_iter()
            .map(|r| {
                std::thread::spawn(move || {
                    r.manager.stop().expect("stop");
                    r.part()
                })
            })
            .collect();
        gone.extend(handles.into_iter().map(|h| h.join().expect("stop")));
        assert!(
            wait_until(Duration::from_secs(60), || recorded_settled(&ms, N)),
            "cycle {cycle}: back to 10"
        );
    }
    let mut parts = gone.clone();
    parts.extend(ms.iter().map(|r| r.part()));
    let ledger = Ledger::of_events(&parts);
    assert!(ledger.overlaps().is_empty(), "{:?}", ledger.overlaps());
    // A stable group publishes nothing over a quiet minute.
    let version = observer.last_version();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        assert_eq!(
            observer.last_version(),
            version,
            "published during a quiet minute"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for r in ms {
        r.manager.stop().expect("stop");
    }
}
