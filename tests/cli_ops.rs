//! `parti plan` and `parti doctor` against live groups on a real
//! nats-server: plan's predicted moves for `--add 1` are exactly what the
//! group does when one worker joins, and doctor passes a healthy group but
//! finds a bucket with the wrong settings and stale, inconsistent records.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use group::{config_flags, exactly_once, fast_config, manager_report, start_manager, wait_until};
use parti::store::nats::{connect, NatsBackend};
use parti::store::{BucketConfig, KvBackend};
use parti::wire::{self, AssignmentRecord, LeaderRecord, OwnedPartition, WorkerRecord};
use parti::{BucketNames, Manager, RebalanceKind, State};
use serde_json::Value;
use support::NatsServer;

const N: usize = 30;

/// Runs `parti ARGS... --server URL --json`; its exit code and JSON output.
fn parti_json(url: &str, args: &[&str], extra: &[String]) -> (Option<i32>, Value) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_parti"))
        .args(args)
        .args(["--server", url, "--json"])
        .args(extra)
        .output()
        .expect("run parti");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "parti {args:?}: no JSON ({e}); stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

fn placement(ms: &[&Manager]) -> BTreeMap<String, Vec<String>> {
    manager_report(ms)
        .into_iter()
        .map(|(w, mut ps)| {
            ps.sort();
            (w, ps)
        })
        .collect()
}

fn ids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn settled(ms: &[&Manager]) -> bool {
    ms.iter()
        .all(|m| m.state() == State::Stable && !m.assignment().is_empty())
        && exactly_once(&manager_report(ms), N)
}

#[test]
fn plan_predicts_the_join_and_doctor_passes_a_healthy_group() {
    let server = NatsServer::start();
    let url = server.url();
    let g = "plan";
    let config = fast_config();
    let mut managers: Vec<Manager> = (0..3)
        .map(|_| start_manager(&url, g, N, &config).0)
        .collect();
    let refs: Vec<&Manager> = managers.iter().collect();
    assert!(
        wait_until(Duration::from_secs(20), || settled(&refs)),
        "group did not settle: {:?}",
        manager_report(&refs)
    );
    let before = placement(&refs);

    // A healthy group: doctor, told the workers' configuration, finds
    // nothing wrong.
    let (code, report) = parti_json(&url, &["doctor", "--group", g], &config_flags(&config));
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["healthy"], true, "{report}");

    let (code, plan) = parti_json(&url, &["plan", "--group", g, "--add", "1"], &[]);
    assert_eq!(code, Some(0), "{plan}");
    assert_eq!(ids(&plan["added"]), ["worker-3"], "{plan}");
    // Removing a worker moves only its partitions (and writes nothing).
    let (_, removal) = parti_json(&url, &["plan", "--group", g, "--remove", "worker-0"], &[]);
    let moves = removal["moves"].as_array().expect("moves");
    assert_eq!(moves.len(), before["worker-0"].len(), "{removal}");
    assert!(moves.iter().all(|m| m["from"] == "worker-0"), "{removal}");

    // Now the join itself.
    managers.push(start_manager(&url, g, N, &config).0);
    assert_eq!(managers[3].worker_id(), "worker-3");
    let refs: Vec<&Manager> = managers.iter().collect();
    assert!(
        wait_until(Duration::from_secs(20), || settled(&refs)),
        "group did not settle after the join: {:?}",
        manager_report(&refs)
    );
    let after = placement(&refs);
    let predicted: BTreeMap<String, Vec<String>> = plan["placement"]
        .as_object()
        .expect("placement")
        .iter()
        .map(|(w, ps)| (w.clone(), ids(ps)))
        .collect();
    assert_eq!(after, predicted, "the group did other than planned: {plan}");
    let owner = |p: &BTreeMap<String, Vec<String>>, id: &str| {
        p.iter()
            .find(|(_, ps)| ps.iter().any(|x| x == id))
            .map(|(w, _)| w.clone())
    };
    let mut actual_moves: Vec<(String, Option<String>, Option<String>)> = (0..N)
        .map(|i| format!("p{i}"))
        .filter(|id| owner(&before, id) != owner(&after, id))
        .map(|id| (id.clone(), owner(&before, &id), owner(&after, &id)))
        .collect();
    actual_moves.sort();
    let mut planned_moves: Vec<(String, Option<String>, Option<String>)> = plan["moves"]
        .as_array()
        .expect("moves")
        .iter()
        .map(|m| {
            let s = |v: &Value| v.as_str().map(String::from);
            (
                s(&m["partition"]).unwrap_or_default(),
                s(&m["from"]),
                s(&m["to"]),
            )
        })
        .collect();
    planned_moves.sort();
    assert!(!actual_moves.is_empty());
    assert_eq!(actual_moves, planned_moves);
    assert_eq!(plan["moved"].as_u64(), Some(actual_moves.len() as u64));
    for m in &managers {
        m.stop().expect("stop");
    }
}

fn worker(instance: &str) -> WorkerRecord {
    WorkerRecord {
        instance: instance.into(),
        incarnation: 0,
        seq: 1,
        applied: 1,
        leaving: false,
        host: String::new(),
        pid: 1,
        ..WorkerRecord::starting(instance, String::new(), 1)
    }
}

fn assignment(instance: &str, partitions: &[&str]) -> AssignmentRecord {
    AssignmentRecord {
        version: 1,
        epoch: 1,
        reason: RebalanceKind::ColdStart,
        instance: instance.into(),
        incarnation: 0,
        incoming: Vec::new(),
        partitions: partitions
            .iter()
            .map(|p| OwnedPartition {
                id: p.to_string(),
                weight: 1,
                token: 1,
            })
            .collect(),
    }
}

#[test]
fn doctor_finds_a_misconfigured_bucket_and_stale_records() {
    let server = NatsServer::start();
    let url = server.url();
    let names = BucketNames::for_group("doc").expect("names");
    let backend = NatsBackend::new(connect(&url).expect("connect"), Duration::from_secs(2));
    let open = |bucket: &str, age: Option<Duration>| {
        backend
            .open(&BucketConfig::new(bucket, age))
            .expect("open bucket")
    };
    let workers = open(&names.workers, Some(Duration::from_secs(30)));
    // Wrong: the lease would never expire, so a dead leader stays leader.
    let leader = open(&names.leader, None);
    let assignments = open(&names.assignments, None);
    workers
        .create("worker-0", &wire::encode(&worker("i0")))
        .expect("worker record");
    leader
        .create(
            "leader",
            &wire::encode(&LeaderRecord {
                worker: "worker-0".into(),
                instance: "i0".into(),
                epoch: 1,
            }),
        )
        .expect("lease");
    assignments
        .create("worker-0", &wire::encode(&assignment("i0", &["p0", "p1"])))
        .expect("assignment");
    // Stale: worker-9 is not registered, and it lists p1 as well.
    assignments
        .create("worker-9", &wire::encode(&assignment("i9", &["p1", "p2"])))
        .expect("stale assignment");

    let mut flags = config_flags(&fast_config());
    flags.extend(["--set".to_string(), "worker_id_ttl=30s".to_string()]);
    let (code, report) = parti_json(&url, &["doctor", "--group", "doc"], &flags);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["healthy"], false, "{report}");
    let problems: Vec<(String, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] == "problem")
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (s("check"), s("message"))
        })
        .collect();
    let found = |check: &str, needle: &str| {
        problems
            .iter()
            .any(|(c, m)| c == check && m.contains(needle))
    };
    assert!(found("ttl", &names.leader), "{problems:?}");
    assert!(found("stale", "worker-9"), "{problems:?}");
    assert!(found("ownership", "partition p1"), "{problems:?}");
    // What is right is not reported.
    assert!(!found("ttl", &names.workers), "{problems:?}");
    assert!(!found("ttl", &names.assignments), "{problems:?}");
    backend.close();
}
