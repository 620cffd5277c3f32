//! What a crash and planned moves cost the subscription helpers' partitions,
//! with worker processes (a crash is a SIGKILL) under a steady flow on a
//! real nats-server, at the fast profile (heartbeat 200 ms, TTL 800 ms,
//! emergency grace 300 ms).
//!
//! `JetStreamConsumer`: a crash pauses only the dead worker's partitions,
//! until they are re-owned; planned moves pause only the moved partitions,
//! for about the handoff; nothing is lost; nothing is handled twice except
//! what the dead worker had received and not acked; order per partition
//! holds. `SubjectSubscriber` (core NATS, no redelivery): what is lost is
//! confined to the moved partitions, during their handoff.
//!
//! The workers are this test binary itself, run on the ignored
//! `worker_process` entry with the worker's settings in the environment.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod subs_common;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use subs_common::child::{run_worker, unix_micros, Helper, WorkerSpec, SPEC_VAR};
use subs_common::flow::{Outcome, Publisher};
use subs_common::scenario::{create_stream, moved, row, table, Group, Phase};
use support::{wait_until, NatsServer};

const PARTITIONS: usize = 16;
/// Messages per second across all partitions.
const RATE: u64 = 200;
/// The bound for partitions that did not move.
const UNMOVED_MAX_US: u64 = 200_000;

#[test]
#[ignore = "entry point of the worker processes the other tests start"]
fn worker_process() {
    let spec = std::env::var(SPEC_VAR)
        .expect("only run by the failover tests, which set PARTI_CONSUMER_WORKER");
    let spec: WorkerSpec = serde_json::from_str(&spec).expect("a worker spec");
    run_worker(&spec).expect("worker");
}

fn group(url: &str, name: &str, helper: Helper) -> Group {
    let exe = std::env::current_exe().expect("test binary path");
    let args = [
        "worker_process",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ];
    Group::new(
        WorkerSpec::fast(url, name, PARTITIONS, helper),
        exe.to_string_lossy().to_string(),
        args.iter().map(|s| s.to_string()).collect(),
    )
}

/// Starts `n` workers and waits until they share the partitions.
fn started(url: &str, name: &str, helper: Helper, n: usize) -> Group {
    let mut g = group(url, name, helper);
    for _ in 0..n {
        g.spawn().expect("spawn worker");
    }
    assert!(
        g.wait_settled(Duration::from_secs(20)),
        "group never settled"
    );
    g
}

/// Waits until every published message was handled, or `timeout`.
fn drained(g: &Group, published: &[subs_common::flow::Published], timeout: Duration) -> Outcome {
    wait_until(timeout, || {
        Outcome::of(published, &g.all()).lost().is_empty()
    });
    Outcome::of(published, &g.all())
}

/// SIGKILL of one of 4 workers (not the leader) under a steady flow.
fn crash(helper: Helper) -> (Group, Outcome, Phase, u64, u64) {
    let server = NatsServer::start();
    let url = server.url();
    create_stream(&url).expect("stream");
    let mut g = started(&url, &format!("crash{helper:?}").to_lowercase(), helper, 4);
    let publisher = Publisher::start(&g.spec, RATE, Duration::from_secs(30)).expect("publisher");
    assert!(
        g.wait_handled(100, Duration::from_secs(10)),
        "no steady flow"
    );
    let victim = g.busiest_follower().expect("a follower");
    let mut phase = Phase::start("crash");
    phase.moved = g.workers[victim].owned();
    g.workers[victim].kill();
    let killed = g.workers[victim].killed_at.unwrap_or_else(unix_micros);
    assert!(
        g.wait_settled(Duration::from_secs(10)),
        "the dead worker's partitions were not re-owned"
    );
    let reowned = unix_micros();
    assert!(
        g.wait_handled(150, Duration::from_secs(10)),
        "the flow did not go on"
    );
    let published = publisher.finish();
    let outcome = drained(&g, &published, Duration::from_secs(10));
    phase.to = u64::MAX;
    g.stop_all(Duration::from_secs(10));
    drop(server);
    (g, outcome, phase, killed, reowned)
}

#[test]
fn jetstream_crash_pauses_only_the_dead_workers_partitions() {
    let (g, outcome, phase, killed, reowned) = crash(Helper::JetStream);
    let dead = g.dead();
    eprintln!("{}", table(&outcome, std::slice::from_ref(&phase), &dead));
    eprintln!("re-owned {} ms after the kill", (reowned - killed) / 1000);
    let lost: Vec<_> = outcome
        .lost()
        .iter()
        .take(5)
        .map(|f| (f.partition.clone(), f.msg))
        .collect();
    assert!(
        lost.is_empty(),
        "lost {} messages, e.g. {lost:?}",
        outcome.lost().len()
    );
    let unmoved = row(&outcome, &phase, false, &dead);
    assert!(unmoved.published > 100, "{unmoved:?}");
    assert!(
        unmoved.max <= UNMOVED_MAX_US,
        "partitions the dead worker did not own waited up to {} ms",
        unmoved.max / 1000
    );
    let spec = &g.spec;
    let bound = (spec.heartbeat_ttl_ms + spec.emergency_grace_ms + 1000) * 1000;
    let moved = row(&outcome, &phase, true, &dead);
    assert!(moved.published > 10, "{moved:?}");
    assert!(
        moved.max <= bound,
        "the dead worker's partitions waited up to {} ms (bound {} ms)",
        moved.max / 1000,
        bound / 1000
    );
    let unexplained: Vec<_> = outcome
        .unexplained_duplicates(&dead)
        .iter()
        .take(5)
        .map(|f| (f.partition.clone(), f.msg, f.handled.clone()))
        .collect();
    assert!(
        unexplained.is_empty(),
        "handled twice, not by the dead worker first: {unexplained:?}"
    );
    for f in outcome.duplicates() {
        assert!(
            phase.moved.contains(&f.partition),
            "{} is not the dead worker's",
            f.partition
        );
    }
    let order = outcome.out_of_order();
    assert!(order.is_empty(), "{order:?}");
}

/// A scale-up 3 -> 4, then a graceful stop of one, under a steady flow.
fn planned(helper: Helper) -> (Group, Outcome, Vec<Phase>) {
    let server = NatsServer::start();
    let url = server.url();
    create_stream(&url).expect("stream");
    let mut g = started(
        &url,
        &format!("planned{helper:?}").to_lowercase(),
        helper,
        3,
    );
    let publisher = Publisher::start(&g.spec, RATE, Duration::from_secs(30)).expect("publisher");
    assert!(
        g.wait_handled(50, Duration::from_secs(10)),
        "no steady flow"
    );

    let mut up = Phase::start("scale-up 3 -> 4");
    let before = g.owners();
    g.spawn().expect("spawn");
    assert!(
        g.wait_settled(Duration::from_secs(15)),
        "scale-up did not settle"
    );
    up.moved = moved(&before, &g.owners());
    assert!(
        g.wait_handled(150, Duration::from_secs(10)),
        "the flow did not go on"
    );

    let mut down = Phase::start("graceful stop 4 -> 3");
    up.to = down.from;
    let before = g.owners();
    let leaving = g.busiest_follower().expect("a follower");
    assert!(
        g.workers[leaving].stop(Duration::from_secs(10)),
        "graceful stop"
    );
    assert!(
        g.wait_settled(Duration::from_secs(15)),
        "stop did not settle"
    );
    down.moved = moved(&before, &g.owners());
    assert!(
        g.wait_handled(150, Duration::from_secs(10)),
        "the flow did not go on"
    );
    let published = publisher.finish();
    let outcome = drained(&g, &published, Duration::from_secs(10));
    g.stop_all(Duration::from_secs(10));
    drop(server);
    (g, outcome, vec![up, down])
}

#[test]
fn jetstream_planned_moves_pause_only_the_moved_partitions_for_the_handoff() {
    let (g, outcome, phases) = planned(Helper::JetStream);
    let dead = BTreeSet::new();
    eprintln!("{}", table(&outcome, &phases, &dead));
    let spec = &g.spec;
    let bound =
        g.longest_callback_us(false) + (spec.heartbeat_interval_ms + spec.fetch_wait_ms) * 1000;
    eprintln!("moved bound: {} ms", bound / 1000);
    assert!(outcome.lost().is_empty(), "lost {}", outcome.lost().len());
    assert!(
        outcome.duplicates().is_empty(),
        "handled twice: {}",
        outcome.duplicates().len()
    );
    for phase in &phases {
        assert!(!phase.moved.is_empty(), "{}: nothing moved", phase.name);
        let m = row(&outcome, phase, true, &dead);
        let u = row(&outcome, phase, false, &dead);
        assert!(
            m.published > 0 && u.published > 0,
            "{}: {m:?} {u:?}",
            phase.name
        );
        assert!(
            m.max <= bound,
            "{}: moved partitions waited {} ms (bound {} ms)",
            phase.name,
            m.max / 1000,
            bound / 1000
        );
        assert!(
            u.max <= UNMOVED_MAX_US,
            "{}: unmoved partitions waited {} ms",
            phase.name,
            u.max / 1000
        );
    }
    let order = outcome.out_of_order();
    assert!(order.is_empty(), "{order:?}");
}

/// How long after its new owner's grant callback returned a core NATS
/// subscription may still be on its way to the server (and how long before
/// its old owner's release a message may already be on its way to it).
const SUBSCRIBE_SLACK_US: u64 = 100_000;

#[test]
fn core_crash_loses_only_the_dead_workers_partitions_until_they_are_reowned() {
    let (g, outcome, phase, killed, reowned) = crash(Helper::Core);
    let dead = g.dead();
    eprintln!("{}", table(&outcome, std::slice::from_ref(&phase), &dead));
    eprintln!("re-owned {} ms after the kill", (reowned - killed) / 1000);
    let unmoved = row(&outcome, &phase, false, &dead);
    assert!(unmoved.published > 100, "{unmoved:?}");
    assert_eq!(
        unmoved.lost, 0,
        "partitions the dead worker did not own lost messages"
    );
    assert!(
        unmoved.max <= UNMOVED_MAX_US,
        "unmoved partitions waited {} ms",
        unmoved.max / 1000
    );
    // What is lost: the dead worker's partitions' messages from (about) the
    // kill until their new owner subscribed; nothing later.
    let mut lost_moved = 0;
    for f in outcome.lost() {
        assert!(
            phase.moved.contains(&f.partition),
            "{}#{} lost",
            f.partition,
            f.msg
        );
        let granted = g.granted_by(&f.partition, killed).expect("re-granted");
        assert!(
            f.published + UNMOVED_MAX_US >= killed && f.published <= granted + SUBSCRIBE_SLACK_US,
            "{}#{} lost, published {} ms after the kill, {} ms after the grant",
            f.partition,
            f.msg,
            (f.published as i64 - killed as i64) / 1000,
            (f.published as i64 - granted as i64) / 1000
        );
        lost_moved += 1;
    }
    assert!(
        lost_moved > 0,
        "core NATS lost nothing in a crash? the test saw no handoff"
    );
    assert!(
        outcome.duplicates().is_empty(),
        "core messages handled twice"
    );
}

#[test]
fn core_planned_moves_lose_only_the_moved_partitions_during_the_handoff() {
    let (g, outcome, phases) = planned(Helper::Core);
    let dead = BTreeSet::new();
    eprintln!("{}", table(&outcome, &phases, &dead));
    assert!(
        outcome.duplicates().is_empty(),
        "core messages handled twice"
    );
    for phase in &phases {
        let u = row(&outcome, phase, false, &dead);
        assert!(u.published > 0, "{}: {u:?}", phase.name);
        assert_eq!(
            u.lost, 0,
            "{}: unmoved partitions lost messages",
            phase.name
        );
        assert!(
            u.max <= UNMOVED_MAX_US,
            "{}: unmoved partitions waited {} ms",
            phase.name,
            u.max / 1000
        );
        for f in outcome.select(phase.from, phase.to, &phase.moved, true) {
            if !f.handled.is_empty() {
                continue;
            }
            let released = g.released_from(&f.partition, phase.from).expect("released");
            let granted = g.granted_by(&f.partition, phase.from).expect("granted");
            // A message already on its way to the old owner, or in its
            // subscription's buffer, when it unsubscribed is dropped too.
            assert!(
                f.published + SUBSCRIBE_SLACK_US >= released
                    && f.published <= granted + SUBSCRIBE_SLACK_US,
                "{}: {}#{} lost outside its handoff: published {} ms after the release began, {} ms after the grant ended",
                phase.name,
                f.partition,
                f.msg,
                (f.published as i64 - released as i64) / 1000,
                (f.published as i64 - granted as i64) / 1000
            );
        }
    }
}
