//! A 3-node JetStream cluster with replicated (R3) buckets losing one node,
//! the one that leads the group's streams, then getting it back.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::time::{Duration, Instant};

use group::ledger::Ledger;
use group::store_faults::store_bound;
use group::tokens::assert_single_owners_and_rising_tokens;
use group::{exactly_once, start_recorded, unix_micros, wait_until, Recorded};
use parti::Config;
use support::NatsCluster;

const N: usize = 24;

fn config() -> Config {
    // Replicated writes and stream-leader elections are slower than a
    // single server: windows a little wider than the other suites'.
    Config {
        heartbeat_interval: Duration::from_millis(500),
        heartbeat_ttl: Duration::from_secs(4),
        worker_id_ttl: Duration::from_secs(10),
        election_ttl: Duration::from_secs(4),
        cold_start_window: Duration::from_secs(2),
        planned_scale_window: Duration::from_secs(1),
        emergency_grace: Duration::from_secs(1),
        rebalance_cooldown: Duration::from_millis(500),
        startup_timeout: Duration::from_secs(30),
        shutdown_timeout: Duration::from_secs(10),
        operation_timeout: Duration::from_secs(1),
        replicas: 3,
        ..Config::default()
    }
}

fn reports(ms: &[Recorded]) -> Vec<(String, Vec<String>)> {
    ms.iter()
        .map(|r| {
            (
                r.label(),
                r.manager
                    .assignment()
                    .partitions()
                    .iter()
                    .map(|p| p.id().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// What a failed wait shows: each manager's state and partitions.
fn describe(ms: &[Recorded]) -> String {
    ms.iter()
        .map(|r| {
            let h = r.manager.health();
            format!(
                "{} {:?}{} v{} {:?}",
                r.label(),
                h.state,
                if h.is_leader { " leader" } else { "" },
                h.assignment_version,
                reports(std::slice::from_ref(r))[0].1
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn settled(ms: &[Recorded]) -> bool {
    let r = reports(ms);
    exactly_once(&r, N)
        && r.iter().all(|(_, p)| !p.is_empty())
        && ms.iter().filter(|m| m.manager.is_leader()).count() == 1
}

/// The server name (`n0`..) leading a stream, from any reachable node.
fn stream_leader(urls: &str, stream: &str) -> Option<String> {
    let nc = nats::connect(urls).ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(m) = nc.request_timeout(
            &format!("$JS.API.STREAM.INFO.{stream}"),
            b"",
            Duration::from_secs(2),
        ) {
            let v: serde_json::Value = serde_json::from_slice(&m.data).ok()?;
            if let Some(l) = v["cluster"]["leader"].as_str() {
                return Some(l.to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Starting can fail with a KV timeout while the cluster elects stream or
/// meta leaders (a typed error the caller retries); retry for a while.
fn start_retrying(urls: &str, config: &Config, spawn_only: bool) -> Recorded {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (u, c) = (urls.to_string(), config.clone());
        match std::thread::spawn(move || start_recorded(&u, "cluster", N, &c, spawn_only)).join() {
            Ok(m) => return m,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
            Err(_) => panic!("could not start a manager on the cluster within 30 s"),
        }
    }
}

/// A cluster of three nodes and three busy workers on it. Logs are shown
/// only when the test fails: what each worker saw of the outage.
fn cluster_with_a_group(config: &Config) -> (NatsCluster, String, Vec<Recorded>) {
    let _ = env_logger::builder()
        .is_test(true)
        .parse_filters("parti=info")
        .try_init();
    let cluster = NatsCluster::start(3);
    let urls = cluster.urls();
    // Right after start-up the cluster may still be electing its meta leader.
    let mut ms: Vec<Recorded> = vec![start_retrying(&urls, config, false)];
    for _ in 0..2 {
        ms.push(start_retrying(&urls, config, true));
    }
    assert!(
        wait_until(Duration::from_secs(30), || settled(&ms)),
        "{}",
        describe(&ms)
    );
    (cluster, urls, ms)
}

#[test]
fn losing_the_stream_leader_node_of_a_three_node_cluster() {
    let config = config();
    let (mut cluster, urls, mut ms) = cluster_with_a_group(&config);
    let leader = stream_leader(&urls, "KV_parti-cluster-workers").expect("stream leader");
    let node: usize = leader.trim_start_matches('n').parse().expect("node index");
    eprintln!("killing {leader}, which leads the workers stream");
    let t0 = Instant::now();
    cluster.kill(node);
    // The group keeps (or regains) exactly one owner per partition and can
    // still scale.
    ms.push(start_retrying(&urls, &config, true));
    assert!(
        wait_until(Duration::from_secs(60), || settled(&ms)),
        "after losing {leader}: {}",
        describe(&ms)
    );
    eprintln!("settled {:?} after losing {leader}", t0.elapsed());
    cluster.restart(node);
    let r = ms.remove(0);
    r.manager.stop().expect("stop");
    let gone = r.part();
    assert!(
        wait_until(Duration::from_secs(60), || settled(&ms)),
        "{}",
        describe(&ms)
    );
    let mut parts = vec![gone];
    parts.extend(ms.iter().map(|r| r.part()));
    let ledger = Ledger::of_events(&parts);
    assert!(ledger.overlaps().is_empty(), "{:?}", ledger.overlaps());
    for r in ms {
        r.manager.stop().expect("stop");
    }
}

#[test]
fn the_whole_cluster_restarted_at_once_heals_without_double_owners_or_lower_tokens() {
    let config = config();
    let (mut cluster, urls, mut ms) = cluster_with_a_group(&config);
    let t0 = Instant::now();
    let killed_at = unix_micros();
    cluster.restart_all();
    let answering = t0.elapsed();
    let t1 = Instant::now();
    let bound = store_bound(&config);
    assert!(
        wait_until(Duration::from_secs(60), || settled(&ms)),
        "after the cluster restart: {}",
        describe(&ms)
    );
    eprintln!(
        "whole cluster restarted: answering after {answering:?}, every partition owned again {:?} later (bound {bound:?})",
        t1.elapsed()
    );
    // The outage was real: every worker released its partitions (fenced
    // itself) while the cluster was down, and got work again.
    for r in &ms {
        let released = r.events.lock().unwrap().iter().any(|e| {
            e["t_begin"].as_u64() >= Some(killed_at)
                && e["partitions"].as_array().is_some_and(|a| a.is_empty())
        });
        assert!(released, "{} never released during the outage", r.label());
    }
    // It still takes a joiner.
    ms.push(start_retrying(&urls, &config, true));
    assert!(
        wait_until(Duration::from_secs(60), || settled(&ms)),
        "a joiner after the restart: {}",
        describe(&ms)
    );
    assert_single_owners_and_rising_tokens(&ms, N);
    for r in ms {
        r.manager.stop().expect("stop");
    }
}
