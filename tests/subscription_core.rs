//! The core NATS subject subscriber with real messages on a real
//! nats-server: one worker, then a second joins while messages keep flowing.
//! No handler call happens outside its worker's ownership (none by an old
//! owner after its release), no message is handled twice, and once the
//! rebalance settled every message of every partition is handled exactly
//! once, by its new owner.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod subs_common;
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use group::fast_config;
use parti::source::StaticSource;
use parti::subscription::SubjectSubscriber;
use parti::{Manager, Partition, State};
use subs_common::Ledger;
use support::{wait_until, NatsServer, TcpProxy};

const PARTITIONS: usize = 8;

struct Worker {
    manager: Manager,
    subscriber: Arc<SubjectSubscriber>,
}

fn start_worker(url: &str, sub_url: &str, group: &str, name: &str, ledger: &Ledger) -> Worker {
    let handler_ledger = ledger.clone();
    let who = name.to_string();
    let subscriber = Arc::new(
        SubjectSubscriber::new(
            parti::store::nats::connect(sub_url).expect("connect"),
            "events.{id}.>",
            move |p, msg| {
                let start = Instant::now();
                let n: u64 = String::from_utf8_lossy(&msg.data)
                    .parse()
                    .unwrap_or(u64::MAX);
                std::thread::sleep(Duration::from_millis(1));
                handler_ledger.handled(&who, p.id(), n, start);
            },
        )
        .expect("subscriber"),
    );
    let hook = subscriber.clone();
    let manager = Manager::builder(parti::store::nats::connect(url).expect("connect"), group)
        .config(fast_config())
        .partitions(StaticSource::new(
            (0..PARTITIONS).map(|i| Partition::new(format!("p{i}"))),
        ))
        .on_assignment_changed(ledger.hook(name, move |c| hook.apply(c)))
        .start()
        .expect("manager start");
    Worker {
        manager,
        subscriber,
    }
}

/// Publishes `count` numbered messages to every partition, starting at
/// `first`, and flushes.
fn publish_batch(nc: &nats::Connection, first: u64, count: u64) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for n in first..first + count {
        for i in 0..PARTITIONS {
            let p = format!("p{i}");
            nc.publish(&format!("events.{p}.x"), n.to_string())
                .expect("publish");
            out.push((p, n));
        }
    }
    nc.flush_timeout(Duration::from_secs(2)).expect("flush");
    out
}

#[test]
fn rebalance_moves_subscriptions_without_overlap() {
    let server = NatsServer::start();
    let url = server.url();
    let ledger = Ledger::default();
    let w1 = start_worker(&url, &url, "coregroup", "w1", &ledger);
    w1.manager
        .wait_for_state(State::Stable, Duration::from_secs(10))
        .expect("w1 stable");
    assert!(wait_until(Duration::from_secs(5), || w1
        .subscriber
        .partitions()
        .len()
        == PARTITIONS));

    // Continuous traffic across the join.
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            let nc = nats::connect(&url).expect("connect");
            let started = Instant::now();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(30) {
                publish_batch(&nc, n, 1);
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            nc.close();
            n
        })
    };
    assert!(wait_until(Duration::from_secs(10), || ledger
        .handlers()
        .len()
        >= 40));
    let w2 = start_worker(&url, &url, "coregroup", "w2", &ledger);
    let settled = wait_until(Duration::from_secs(20), || {
        let (a, b) = (w1.manager.assignment(), w2.manager.assignment());
        a.len() + b.len() == PARTITIONS
            && !b.is_empty()
            && w1.manager.state() == State::Stable
            && w2.manager.state() == State::Stable
            && w1.subscriber.partitions().len() == a.len()
            && w2.subscriber.partitions().len() == b.len()
    });
    assert!(settled, "rebalance did not settle");
    stop.store(true, Ordering::SeqCst);
    let continuous = publisher.join().expect("publisher");

    // Settled: a batch with known numbers (above the continuous ones) is
    // handled exactly once per message, by the partition's current owner.
    let nc = nats::connect(&url).expect("connect");
    // A SUB sent by the new owner may still be on its way to the server
    // (core NATS is at-most-once): publish fresh warm-up numbers until one
    // round reaches every partition, then the measured batch.
    let mut warm = continuous + 100;
    let warmed = wait_until(Duration::from_secs(10), || {
        let round = publish_batch(&nc, warm, 1);
        warm += 1;
        std::thread::sleep(Duration::from_millis(50));
        let h = ledger.handlers();
        round.iter().all(|k| h.contains_key(k))
    });
    assert!(warmed, "subscriptions never all became live");
    let first = warm + 1000;
    let batch = publish_batch(&nc, first, 25);
    let all_seen = wait_until(Duration::from_secs(10), || {
        let h = ledger.handlers();
        batch.iter().all(|k| h.contains_key(k))
    });
    assert!(
        all_seen,
        "not every message of the settled batch was handled"
    );
    let handlers = ledger.handlers();
    let a1 = w1.manager.assignment();
    for (p, n) in &batch {
        let by = &handlers[&(p.clone(), *n)];
        let owner = if a1.contains(p) { "w1" } else { "w2" };
        assert_eq!(by.len(), 1, "{p}#{n} handled {} times: {by:?}", by.len());
        assert_eq!(by[0].0, owner, "{p}#{n} handled by a non-owner");
    }

    let outside = ledger.calls_outside_ownership();
    assert!(outside.is_empty(), "{outside:?}");
    assert!(ledger.overlapping_owners().is_empty());
    let twice: Vec<_> = handlers
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .take(5)
        .collect();
    assert!(twice.is_empty(), "core messages handled twice: {twice:?}");
    assert!(!ledger.granted("w2").is_empty());

    w2.manager.stop().expect("stop w2");
    w1.manager.stop().expect("stop w1");
    assert!(w1.subscriber.partitions().is_empty());
    let t = Instant::now();
    w1.subscriber.stop();
    w2.subscriber.stop();
    assert!(t.elapsed() < Duration::from_secs(2));
    nc.close();
}

#[test]
fn subscriptions_come_back_after_a_connection_cut() {
    let server = NatsServer::start();
    let proxy = TcpProxy::start(server.addr());
    let ledger = Ledger::default();
    // The manager talks to the server directly; only the subscriber's
    // connection goes through the proxy.
    let w = start_worker(&server.url(), &proxy.url(), "cutgroup", "w1", &ledger);
    w.manager
        .wait_for_state(State::Stable, Duration::from_secs(10))
        .expect("stable");
    let nc = nats::connect(server.url()).expect("connect");
    let before = publish_batch(&nc, 0, 5);
    assert!(wait_until(Duration::from_secs(5), || {
        let h = ledger.handlers();
        before.iter().all(|k| h.contains_key(k))
    }));
    proxy.cut();
    std::thread::sleep(Duration::from_millis(500)); // the cut itself is the condition
    proxy.restore();
    // Messages published once the client has resubscribed are handled again;
    // keep publishing fresh numbers until one batch gets through whole.
    let mut n = 100;
    let recovered = wait_until(Duration::from_secs(15), || {
        let batch = publish_batch(&nc, n, 1);
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
        let h = ledger.handlers();
        batch.iter().all(|k| h.contains_key(k))
    });
    assert!(
        recovered,
        "no message handled after the connection was restored"
    );
    let handlers: BTreeMap<_, _> = ledger.handlers();
    assert!(handlers.values().all(|v| v.iter().all(|(w, _)| w == "w1")));
    w.manager.stop().expect("stop");
    w.subscriber.stop();
    nc.close();
}

/// A handler stuck on a removed partition: `apply` returns after the release
/// timeout, reports it through the error hook, and no further message of
/// that partition reaches the handler.
#[test]
fn a_stuck_handler_delays_a_release_only_up_to_its_timeout() {
    let server = NatsServer::start();
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();
    let calls = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (c, e) = (calls.clone(), errors.clone());
    let sub = SubjectSubscriber::with_options(
        parti::store::nats::connect(&server.url()).expect("connect"),
        "stuck.{id}",
        move |p, _| {
            c.lock().unwrap().push(p.id().to_string());
            // The first call blocks until the test opens the gate.
            let _ = gate_rx.recv_timeout(Duration::from_secs(5));
        },
        Some(Box::new(move |err| e.lock().unwrap().push(err.to_string()))),
        Duration::from_millis(100),
        Duration::from_millis(300),
    )
    .expect("subscriber");
    let a = parti::Assignment::new(1, 1, None, [(Partition::new("p0"), 1)]);
    sub.apply(&parti::AssignmentChange::between(
        &parti::Assignment::default(),
        &a,
    ));
    let nc = nats::connect(server.url()).expect("connect");
    assert!(wait_until(Duration::from_secs(5), || {
        nc.publish("stuck.p0", "x").expect("publish");
        !calls.lock().unwrap().is_empty()
    }));
    nc.publish("stuck.p0", "y").expect("publish");
    nc.flush_timeout(Duration::from_secs(2)).expect("flush");
    let t = Instant::now();
    sub.apply(&parti::AssignmentChange::between(
        &a,
        &parti::Assignment::default(),
    ));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "apply took {took:?}"
    );
    assert!(
        errors.lock().unwrap().iter().any(|e| e.contains("release")),
        "{:?}",
        errors.lock().unwrap()
    );
    let seen = calls.lock().unwrap().len();
    gate_tx.send(()).expect("open the gate");
    // Messages already buffered for p0 must not reach the handler any more.
    for _ in 0..5 {
        nc.publish("stuck.p0", "z").expect("publish");
    }
    nc.flush_timeout(Duration::from_secs(2)).expect("flush");
    let more = wait_until(Duration::from_millis(500), || {
        calls.lock().unwrap().len() > seen
    });
    assert!(
        !more,
        "handler called after the release: {:?}",
        calls.lock().unwrap()
    );
    sub.stop();
    nc.close();
}
