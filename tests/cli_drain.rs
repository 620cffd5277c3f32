//! `parti drain|undrain|rebalance` against live groups on a real
//! nats-server: a drained worker holds nothing within one planned window
//! and keeps running, stays drained when the leader changes, takes work
//! again once undrained; `rebalance` places a joiner at once instead of at
//! the end of its window; no partition is ever owned by two workers.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use group::ledger::Ledger;
use group::{exactly_once, fast_config, recorded_reports, start_recorded, Recorded};
use parti::State;
use serde_json::Value;
use support::{wait_until, NatsServer};

const N: usize = 24;

/// Runs `parti ARGS... --server URL --json`: its exit code and JSON output.
fn parti(url: &str, args: &[&str]) -> (Option<i32>, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_parti"))
        .args(args)
        .args(["--server", url, "--json"])
        .output()
        .expect("run parti");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if out.status.code() != Some(0) {
        eprintln!(
            "parti {args:?}: {:?}; stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (out.status.code(), json)
}

fn held(r: &Recorded) -> usize {
    r.manager.assignment().partitions().len()
}

/// Each partition held once by the managers in `ms` (none by the others).
fn once(ms: &[&Recorded]) -> bool {
    let reports: Vec<_> = ms
        .iter()
        .map(|r| {
            let a = r.manager.assignment();
            let ids = a.partitions().iter().map(|p| p.id().to_string());
            (r.label(), ids.collect())
        })
        .collect();
    exactly_once(&reports, N)
}

/// Whether any assignment callback after the `skip` first ones granted
/// `r` a partition.
fn granted_after(r: &Recorded, skip: usize) -> bool {
    r.events
        .lock()
        .unwrap()
        .iter()
        .skip(skip)
        .any(|e| e["added"].as_array().is_some_and(|a| !a.is_empty()))
}

fn assert_never_owned_twice(parts: &[(String, Vec<group::Event>)]) {
    let overlaps = Ledger::of_events(parts).overlaps();
    assert!(overlaps.is_empty(), "owned twice: {overlaps:#?}");
}

#[test]
fn drain_empties_a_worker_across_a_leader_change_and_undrain_gives_it_work() {
    let server = NatsServer::start();
    let url = server.url();
    let g = "drain";
    let config = fast_config();
    let mut ms: Vec<Recorded> = (0..4)
        .map(|_| start_recorded(&url, g, N, &config, false))
        .collect();
    assert!(
        wait_until(Duration::from_secs(20), || exactly_once(
            &recorded_reports(&ms),
            N
        ) && ms
            .iter()
            .all(|m| held(m) > 0 && m.manager.state() == State::Stable)),
        "the group never settled: {:?}",
        recorded_reports(&ms)
    );
    let leader = ms
        .iter()
        .position(|m| m.manager.is_leader())
        .expect("a leader");
    let w = (leader + 1) % ms.len();
    let id = ms[w].manager.worker_id().to_string();

    let (code, _) = parti(&url, &["drain", "--group", g, "nobody-7"]);
    assert_eq!(code, Some(1), "draining an unknown worker is refused");

    // From before the CLI starts: its own start and connect count too.
    let asked = Instant::now();
    let (code, out) = parti(&url, &["drain", "--group", g, &id]);
    assert_eq!(code, Some(0), "drain: {out}");
    assert_eq!(out["changed"], true, "{out}");
    assert_eq!(out["drained"], serde_json::json!([id]), "{out}");
    // Its release callback has returned within one planned window.
    assert!(
        wait_until(
            config.planned_scale_window.saturating_sub(asked.elapsed()),
            || { held(&ms[w]) == 0 }
        ),
        "{id} still holds {} partitions a planned window after the drain",
        held(&ms[w])
    );
    eprintln!(
        "{id} released everything {:?} after the drain",
        asked.elapsed()
    );
    // Draining again changes nothing; `--wait` sees it holds nothing.
    let (code, out) = parti(
        &url,
        &["drain", "--group", g, &id, "--wait", "--timeout", "10"],
    );
    assert_eq!(code, Some(0), "drain --wait: {out}");
    assert_eq!(out["changed"], false, "{out}");
    assert_eq!(out["released"], true, "{out}");
    let released_at = ms[w].events.lock().unwrap().len();
    let others = |ms: &[Recorded], w: usize| -> Vec<usize> {
        (0..ms.len()).filter(|i| *i != w).collect::<Vec<_>>()
    };
    let rest = others(&ms, w);
    assert!(
        wait_until(Duration::from_secs(10), || once(
            &rest.iter().map(|i| &ms[*i]).collect::<Vec<_>>()
        )),
        "the others do not hold everything once: {:?}",
        recorded_reports(&ms)
    );
    assert_eq!(
        ms[w].manager.state(),
        State::Stable,
        "a drained worker keeps running"
    );
    let (_, status) = parti(&url, &["status", "--group", g]);
    let row = status["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|r| r["id"] == id.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(row["drained"], true, "status shows the drain: {row}");
    assert_eq!(status["drained"], serde_json::json!([id]), "{status}");

    // The drain lives in KV: the next leader keeps the worker empty.
    let old = ms.remove(leader);
    let w = if leader < w { w - 1 } else { w };
    old.manager.stop().expect("stop the leader");
    let old_part = old.part();
    let rest = others(&ms, w);
    assert!(
        wait_until(Duration::from_secs(15), || {
            ms.iter().filter(|m| m.manager.is_leader()).count() == 1
                && once(&rest.iter().map(|i| &ms[*i]).collect::<Vec<_>>())
                && rest.iter().all(|i| ms[*i].manager.state() == State::Stable)
        }),
        "no new leader placed the old one's work: {:?}",
        recorded_reports(&ms)
    );
    assert!(
        !granted_after(&ms[w], released_at) && held(&ms[w]) == 0,
        "{id} was given work while drained"
    );

    let (code, out) = parti(&url, &["undrain", "--group", g, &id]);
    assert_eq!(code, Some(0), "undrain: {out}");
    assert_eq!(out["drained"], serde_json::json!([]), "{out}");
    assert!(
        wait_until(Duration::from_secs(10), || held(&ms[w]) > 0
            && exactly_once(&recorded_reports(&ms), N)),
        "{id} got no work after the undrain: {:?}",
        recorded_reports(&ms)
    );
    let mut parts: Vec<_> = ms.iter().map(|m| m.part()).collect();
    parts.push(old_part);
    assert_never_owned_twice(&parts);
    for m in ms {
        m.manager.stop().expect("stop");
    }
}

#[test]
fn rebalance_places_a_joiner_before_its_window_ends() {
    let server = NatsServer::start();
    let url = server.url();
    let g = "rebalance";
    let mut config = fast_config();
    // Long enough that only the request can explain a prompt placement.
    config.planned_scale_window = Duration::from_secs(30);
    // Spawned, not started: `start` would wait out the window.
    let mut ms: Vec<Recorded> = (0..2)
        .map(|_| start_recorded(&url, g, N, &config, true))
        .collect();
    assert!(
        wait_until(Duration::from_secs(20), || exactly_once(
            &recorded_reports(&ms),
            N
        ) && ms
            .iter()
            .all(|m| held(m) > 0 && m.manager.state() == State::Stable)),
        "the group never settled: {:?}",
        recorded_reports(&ms)
    );
    ms.push(start_recorded(&url, g, N, &config, true));
    // The window holds the joiner back: the leader knows it and waits.
    let leader = ms
        .iter()
        .position(|m| m.manager.is_leader())
        .expect("a leader");
    assert!(
        wait_until(Duration::from_secs(5), || ms[leader].manager.state()
            == State::Scaling),
        "the leader never saw the joiner"
    );
    assert_eq!(held(&ms[2]), 0, "the joiner was placed before its window");
    let asked = Instant::now();
    let (code, out) = parti(&url, &["rebalance", "--group", g]);
    assert_eq!(code, Some(0), "rebalance: {out}");
    assert_eq!(out["rebalance_requests"], 1, "{out}");
    // ...until the request.
    assert!(
        wait_until(Duration::from_secs(5), || held(&ms[2]) > 0
            && exactly_once(&recorded_reports(&ms), N)),
        "the joiner got nothing after the rebalance: {:?}",
        recorded_reports(&ms)
    );
    eprintln!("joiner placed {:?} after the request", asked.elapsed());
    assert_never_owned_twice(&ms.iter().map(|m| m.part()).collect::<Vec<_>>());
    for m in ms {
        m.manager.stop().expect("stop");
    }
}
