//! The published view on a real nats-server: a reader watching the
//! `assignments` bucket from its own connection (as a dashboard, `parti
//! status` or a client in another language would) through a bounded churn
//! run — workers in child processes killed with SIGKILL, the leader among
//! them, restarted under their IDs or new ones — never sees a partition
//! listed in two workers' records at once.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use group::{assert_settles, fast_config, ChildWorker};
use parti::store::nats::NatsBackend;
use parti::store::{BucketConfig, KvBackend, Watch, WatchEvent};
use parti::wire::AssignmentRecord;
use support::NatsServer;

const N: usize = 24;

/// Every moment the bucket listed a partition under two keys.
type Clashes = Arc<Mutex<Vec<String>>>;

/// Follows the bucket's puts and deletes in order and checks, after each
/// one, the record just written against every other record.
fn watch_view(url: &str, group: &str) -> (Clashes, Arc<Mutex<u64>>, (NatsBackend, Watch)) {
    let backend = NatsBackend::new(
        parti::store::nats::connect(url).expect("connect"),
        Duration::from_secs(2),
    );
    let store = backend
        .open(&BucketConfig::new(
            format!("parti-{group}-assignments"),
            None,
        ))
        .expect("open assignments bucket");
    let watch = store.watch(None).expect("watch assignments");
    let clashes: Clashes = Arc::default();
    let seen: Arc<Mutex<u64>> = Arc::default();
    let (sink, count) = (clashes.clone(), seen.clone());
    let rx = watch.events().clone();
    std::thread::spawn(move || {
        let mut records: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for ev in rx.iter() {
            match ev {
                WatchEvent::Put(e) if e.key != "_meta" => {
                    let Ok(r) = serde_json::from_slice::<AssignmentRecord>(&e.value) else {
                        sink.lock().unwrap().push(format!("unreadable {}", e.key));
                        continue;
                    };
                    let ids: BTreeSet<String> = r.partitions.into_iter().map(|p| p.id).collect();
                    for (other, theirs) in &records {
                        if *other != e.key {
                            if let Some(id) = ids.intersection(theirs).next() {
                                sink.lock().unwrap().push(format!(
                                    "{id} under {} (v{}) and {other}",
                                    e.key, r.version
                                ));
                            }
                        }
                    }
                    records.insert(e.key, ids);
                    *count.lock().unwrap() += 1;
                }
                WatchEvent::Delete { key, .. } => {
                    records.remove(&key);
                }
                _ => {}
            }
        }
    });
    (clashes, seen, (backend, watch))
}

#[test]
fn no_partition_shows_under_two_workers_through_churn() {
    let server = NatsServer::start();
    let config = fast_config();
    let group = "view";
    let (clashes, seen, _watching) = watch_view(&server.url(), group);
    let spawn = |id: Option<&str>| ChildWorker::spawn(&server.url(), group, N, &config, id);
    let mut workers: Vec<ChildWorker> = (0..5)
        .map(|i| spawn(Some(&format!("worker-{i}"))))
        .collect();
    assert_settles(&workers, N, Duration::from_secs(20), "the group");
    // Eight rounds: kill one (every third round the leader), then restart
    // it under its ID or start a newcomer, without waiting for the group
    // to settle in between.
    for round in 0..8 {
        let alive: Vec<usize> = (0..workers.len())
            .filter(|i| workers[*i].killed_at.is_none())
            .collect();
        let victim = if round % 3 == 0 {
            alive.iter().copied().find(|i| workers[*i].is_leader())
        } else {
            None
        }
        .unwrap_or(alive[round % alive.len()]);
        let id = workers[victim].worker_id();
        workers[victim].kill();
        std::thread::sleep(Duration::from_millis(300 + 150 * (round as u64 % 4)));
        let again = if round % 2 == 0 { id.as_deref() } else { None };
        workers.push(spawn(again));
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_settles(&workers, N, Duration::from_secs(30), "after the churn");
    let writes = *seen.lock().unwrap();
    let clashes = clashes.lock().unwrap().clone();
    println!(
        "{writes} record writes watched, {} double listings",
        clashes.len()
    );
    assert!(writes > 20, "the churn published: {writes} writes");
    assert!(clashes.is_empty(), "double listings seen: {clashes:?}");
}

#[test]
fn parti_status_flags_a_partition_listed_under_two_workers() {
    let server = NatsServer::start();
    let group = "view-status";
    let (m, _) = group::start_manager(&server.url(), group, 4, &fast_config());
    let held = m.assignment().partitions()[0].id().to_string();
    // A record written from outside the library (by hand, or by a broken
    // tool) that lists a partition the worker holds.
    let forged = AssignmentRecord {
        version: 1,
        epoch: 1,
        reason: parti::RebalanceKind::ColdStart,
        instance: "elsewhere".into(),
        incarnation: 0,
        partitions: vec![parti::wire::OwnedPartition {
            id: held.clone(),
            weight: 1,
            token: 1,
        }],
        incoming: vec![],
    };
    let raw = nats::connect(server.url()).unwrap();
    raw.request_timeout(
        &format!("$KV.parti-{group}-assignments.worker-99"),
        serde_json::to_vec(&forged).unwrap(),
        Duration::from_secs(2),
    )
    .expect("kv put");
    let run = |json: bool| {
        let url = server.url();
        let mut args = vec!["status", "--server", url.as_str(), "--group", group];
        if json {
            args.push("--json");
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_parti"))
            .args(&args)
            .output()
            .expect("run parti");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let json: serde_json::Value = serde_json::from_str(&run(true)).expect("status JSON");
    let flagged = json["double_listed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(flagged.len(), 1, "{json}");
    assert_eq!(flagged[0]["partition"], held.as_str());
    let workers: Vec<&str> = flagged[0]["workers"]
        .as_array()
        .map(|a| a.iter().filter_map(|w| w.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(workers, vec![m.worker_id(), "worker-99"]);
    let text = run(false);
    assert!(
        text.contains(&format!("INCONSISTENT partition {held} is listed under")),
        "{text}"
    );
    m.stop().unwrap();
}
