//! Exactly one owner, proven by an ownership ledger: every worker (a child
//! process) reports when its callbacks took and released each partition, on
//! one wall clock; across scale-up, scale-down, crashes, a leader crash, a
//! client-side network cut and a server restart, no two intervals of a
//! partition may overlap, and every partition is owned again at the end.

mod group;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use group::ledger::Ledger;
use group::*;
use support::{NatsServer, TcpProxy};

const N: usize = 30;
const RELEASE_MS: u64 = 50;

fn spawn(url: &str, group: &str) -> ChildWorker {
    ChildWorker::spawn_with(
        url,
        group,
        N,
        &fast_config(),
        None,
        &["--release-ms", &RELEASE_MS.to_string()],
    )
}

/// Waits until the live workers own every partition exactly once and nothing
/// changed for a heartbeat TTL.
fn settle(workers: &[&ChildWorker], timeout: Duration) {
    let quiet = fast_config().heartbeat_ttl;
    let mut last = child_reports(workers);
    let mut since = std::time::Instant::now();
    let ok = wait_until(timeout, || {
        let now = child_reports(workers);
        if now != last {
            last = now;
            since = std::time::Instant::now();
        }
        let all_busy = last.iter().all(|(_, ps)| !ps.is_empty());
        exactly_once(&last, N) && all_busy && since.elapsed() >= quiet
    });
    assert!(ok, "group did not settle: {:?}", child_reports(workers));
}

struct Outcome {
    name: &'static str,
    moved: usize,
    minimum: usize,
    longest_unowned_ms: f64,
    revoked_unmoved: usize,
}

/// A planned move: only the necessary partitions moved (sticky), none
/// unowned for longer than one heartbeat interval plus the release
/// callback's own time.
fn assert_planned(out: &Outcome) {
    assert_eq!(out.moved, out.minimum, "sticky: only the necessary moves");
    let target = fast_config().heartbeat_interval.as_millis() as f64 + RELEASE_MS as f64;
    assert!(
        out.longest_unowned_ms < target,
        "{}: planned move unowned {} ms",
        out.name,
        out.longest_unowned_ms
    );
}

/// Checks the ledger between `from` and `to` and prints the scenario's row.
fn check(
    name: &'static str,
    all: &[&ChildWorker],
    from: u64,
    to: u64,
    expect_unmoved_untouched: bool,
) -> Outcome {
    let ledger = Ledger::of(all);
    let overlaps = ledger.overlaps();
    assert!(
        overlaps.is_empty(),
        "{name}: two owners at once:\n{}",
        overlaps.join("\n")
    );
    let now = ledger.owners_now();
    assert_eq!(now.len(), N, "{name}: every partition owned at the end");
    assert!(now.values().all(|o| o.len() == 1), "{name}: {now:?}");
    let before = ledger.owners_at(from);
    let after = ledger.owners_at(to);
    let moved: Vec<String> = after
        .iter()
        .filter(|(p, o)| before.get(*p) != Some(o))
        .map(|(p, _)| p.clone())
        .collect();
    let count = |m: &BTreeMap<String, String>| {
        let mut c: BTreeMap<String, usize> = BTreeMap::new();
        for o in m.values() {
            *c.entry(o.clone()).or_default() += 1;
        }
        c
    };
    let (cb, ca) = (count(&before), count(&after));
    let kept: usize = cb
        .iter()
        .map(|(w, n)| (*n).min(ca.get(w).copied().unwrap_or(0)))
        .sum();
    let minimum = N - kept;
    let revoked = ledger.revoked_but_unmoved(from, to);
    let all_ids: Vec<String> = (0..N).map(|i| format!("p{i}")).collect();
    if expect_unmoved_untouched {
        assert!(
            revoked.is_empty(),
            "{name}: unmoved partitions were revoked: {revoked:?}"
        );
    }
    let outcome = Outcome {
        name,
        moved: moved.len(),
        minimum,
        longest_unowned_ms: ledger.longest_unowned(&all_ids, from, to) as f64 / 1000.0,
        revoked_unmoved: revoked.len(),
    };
    eprintln!(
        "| {} | {} | {} | {:.0} ms | {} |",
        outcome.name,
        outcome.moved,
        outcome.minimum,
        outcome.longest_unowned_ms,
        outcome.revoked_unmoved
    );
    outcome
}

#[test]
fn scale_up_three_to_six() {
    let server = NatsServer::start();
    let mut workers: Vec<ChildWorker> = (0..3).map(|_| spawn(&server.url(), "up")).collect();
    settle(&live(&workers), Duration::from_secs(20));
    let from = unix_micros();
    workers.extend((0..3).map(|_| spawn(&server.url(), "up")));
    settle(&live(&workers), Duration::from_secs(20));
    let out = check("scale up 3 → 6", &live(&workers), from, unix_micros(), true);
    assert_planned(&out);
}

#[test]
fn scale_down_six_to_three_gracefully() {
    let server = NatsServer::start();
    let mut workers: Vec<ChildWorker> = (0..6).map(|_| spawn(&server.url(), "down")).collect();
    settle(&live(&workers), Duration::from_secs(20));
    let from = unix_micros();
    // Stop three followers at once.
    let leaving: Vec<usize> = (0..6)
        .filter(|i| !workers[*i].is_leader())
        .take(3)
        .collect();
    for i in &leaving {
        workers[*i].write_line("");
        workers[*i].stop(Duration::ZERO);
    }
    for i in &leaving {
        assert!(
            workers[*i].stop(Duration::from_secs(10)),
            "graceful stop finished"
        );
    }
    let staying: Vec<&ChildWorker> = (0..6)
        .filter(|i| !leaving.contains(i))
        .map(|i| &workers[i])
        .collect();
    settle(&staying, Duration::from_secs(20));
    let all: Vec<&ChildWorker> = workers.iter().collect();
    let out = check(
        "scale down 6 → 3 (graceful)",
        &all,
        from,
        unix_micros(),
        true,
    );
    assert_planned(&out);
}

/// SIGKILL of one of three workers, the leader or a follower: only its
/// partitions move.
fn sigkill_one_of_three(group: &str, the_leader: bool, name: &'static str) {
    let server = NatsServer::start();
    let mut workers: Vec<ChildWorker> = (0..3).map(|_| spawn(&server.url(), group)).collect();
    settle(&live(&workers), Duration::from_secs(20));
    let from = unix_micros();
    let victim = workers
        .iter()
        .position(|w| w.is_leader() == the_leader)
        .expect("a leader and followers");
    workers[victim].kill();
    settle(&live(&workers), Duration::from_secs(20));
    let all: Vec<&ChildWorker> = workers.iter().collect();
    let out = check(name, &all, from, unix_micros(), true);
    assert_eq!(out.moved, out.minimum);
}

#[test]
fn sigkill_of_a_worker() {
    sigkill_one_of_three("kill", false, "SIGKILL of a worker");
}

#[test]
fn sigkill_of_the_leader() {
    sigkill_one_of_three("killlead", true, "SIGKILL of the leader");
}

#[test]
fn cut_connection_self_fences_before_its_partitions_move() {
    let server = NatsServer::start();
    let config = fast_config();
    let mut workers: Vec<ChildWorker> = (0..2).map(|_| spawn(&server.url(), "cut")).collect();
    settle(&live(&workers), Duration::from_secs(20));
    let proxy = TcpProxy::start(server.addr());
    workers.push(spawn(&proxy.url(), "cut"));
    settle(&live(&workers), Duration::from_secs(20));
    let from = unix_micros();
    proxy.cut();
    // Longer than the TTL: the leader declares it dead and moves its
    // partitions; it must have released them first.
    let cut_for = config.heartbeat_ttl + config.emergency_grace + Duration::from_millis(1500);
    let others: Vec<&ChildWorker> = workers[..2].iter().collect();
    assert!(wait_until(cut_for + Duration::from_secs(5), || {
        exactly_once(&child_reports(&others), N)
    }));
    std::thread::sleep(cut_for.saturating_sub(Duration::from_micros(unix_micros() - from)));
    proxy.restore();
    // It rejoins and gets work again.
    assert!(
        wait_until(Duration::from_secs(20), || !workers[2]
            .partitions()
            .is_empty()),
        "cut worker rejoined: {:?}",
        workers[2].events()
    );
    settle(&live(&workers), Duration::from_secs(20));
    let all: Vec<&ChildWorker> = workers.iter().collect();
    check(
        "connection cut > TTL, restored",
        &all,
        from,
        unix_micros(),
        false,
    );
    let fenced = workers[2]
        .events()
        .iter()
        .any(|e| e["event"] == "state" && e["to"] == "Degraded");
    assert!(fenced, "the cut worker fenced itself");
}

#[test]
fn nats_server_killed_and_restarted() {
    let mut server = NatsServer::start();
    let workers: Vec<ChildWorker> = (0..3).map(|_| spawn(&server.url(), "restart")).collect();
    settle(&live(&workers), Duration::from_secs(20));
    let from = unix_micros();
    server.kill();
    std::thread::sleep(fast_config().heartbeat_ttl * 2);
    server.restart();
    settle(&live(&workers), Duration::from_secs(30));
    let all: Vec<&ChildWorker> = workers.iter().collect();
    check(
        "nats-server killed and restarted",
        &all,
        from,
        unix_micros(),
        false,
    );
}
