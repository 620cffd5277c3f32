//! The JetStream consumer helper with real messages on a real nats-server:
//! one worker, then a second joins (planned rebalance) while messages keep
//! flowing into a work-queue stream. Every message is handled, by the owner
//! of its partition at that moment; no old owner handles anything after its
//! release; the new owner handles everything of its partitions after its
//! grant; the stream ends empty (everything acked). Also: a stale consumer
//! holding a partition's subject is replaced at once, and a consumer the
//! server refuses stops only its own partition. (Crashes and planned moves
//! under a steady flow: `subscription_failover.rs`.)
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
use parti::subscription::{JetStreamConfig, JetStreamConsumer};
use parti::{Manager, Partition, State};
use subs_common::Ledger;
use support::{wait_until, NatsServer};

const PARTITIONS: usize = 8;
const GROUP: &str = "jsgroup";

fn create_stream(url: &str, retention: &str, name: &str, subjects: &str) {
    let nc = nats::connect(url).expect("connect");
    let body = serde_json::json!({
        "name": name,
        "subjects": [subjects],
        "retention": retention,
        "storage": "memory",
        "num_replicas": 1,
    });
    let reply = nc
        .request_timeout(
            &format!("$JS.API.STREAM.CREATE.{name}"),
            body.to_string(),
            Duration::from_secs(5),
        )
        .expect("stream create");
    let text = String::from_utf8_lossy(&reply.data).to_string();
    assert!(!text.contains("\"error\""), "stream create failed: {text}");
    nc.close();
}

fn stream_messages(nc: &nats::Connection, name: &str) -> Option<u64> {
    let reply = nc
        .request_timeout(
            &format!("$JS.API.STREAM.INFO.{name}"),
            "",
            Duration::from_secs(2),
        )
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&reply.data).ok()?;
    v["state"]["messages"].as_u64()
}

struct Worker {
    manager: Manager,
    consumer: Arc<JetStreamConsumer>,
}

fn js_config(durable: &str) -> JetStreamConfig {
    JetStreamConfig {
        batch: 16,
        fetch_wait: Duration::from_millis(300),
        op_timeout: Duration::from_secs(1),
        ack_wait: Duration::from_secs(5),
        inactive_threshold: Duration::from_secs(10),
        retry_every: Duration::from_millis(200),
        release_timeout: Duration::from_secs(3),
        ..JetStreamConfig::new("ORDERS", durable, "orders.{id}.>")
    }
}

fn start_worker(url: &str, name: &str, ledger: &Ledger) -> Worker {
    let handler_ledger = ledger.clone();
    let who = name.to_string();
    let consumer = Arc::new(
        JetStreamConsumer::start(
            parti::store::nats::connect(url).expect("connect"),
            js_config(GROUP),
            move |p, msg| {
                let start = Instant::now();
                let n: u64 = String::from_utf8_lossy(&msg.data)
                    .parse()
                    .map_err(|e| format!("bad payload: {e}"))?;
                // A little work, so handler calls are in flight during handoffs.
                std::thread::sleep(Duration::from_millis(2));
                handler_ledger.handled(&who, p.id(), n, start);
                Ok(())
            },
        )
        .expect("consumer start"),
    );
    let hook = consumer.clone();
    let manager = Manager::builder(parti::store::nats::connect(url).expect("connect"), GROUP)
        .config(fast_config())
        .partitions(StaticSource::new(
            (0..PARTITIONS).map(|i| Partition::new(format!("p{i}"))),
        ))
        .on_assignment_changed(ledger.hook(name, move |c| hook.apply(c)))
        .start()
        .expect("manager start");
    Worker { manager, consumer }
}

#[test]
fn rebalance_hands_every_message_to_the_current_owner() {
    let server = NatsServer::start();
    let url = server.url();
    create_stream(&url, "workqueue", "ORDERS", "orders.>");
    let ledger = Ledger::default();

    let w1 = start_worker(&url, "w1", &ledger);
    w1.manager
        .wait_for_state(State::Stable, Duration::from_secs(10))
        .expect("w1 stable");
    assert_eq!(w1.manager.assignment().len(), PARTITIONS);

    // Publish continuously (with JetStream acks, so every message is stored)
    // from before the join until after the rebalance settled.
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let publisher = {
        let url = url.clone();
        let stop = stop_publishing.clone();
        std::thread::spawn(move || {
            let nc = nats::connect(&url).expect("connect");
            let mut published: BTreeMap<(String, u64), Instant> = BTreeMap::new();
            let started = Instant::now();
            let mut n = 0u64;
            // Bounded: at most 30 s or until told to stop.
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(30) {
                for i in 0..PARTITIONS {
                    let p = format!("p{i}");
                    let reply = nc
                        .request_timeout(
                            &format!("orders.{p}.created"),
                            n.to_string(),
                            Duration::from_secs(2),
                        )
                        .expect("publish ack");
                    let text = String::from_utf8_lossy(&reply.data).to_string();
                    assert!(text.contains("\"seq\""), "publish failed: {text}");
                    published.insert((p, n), Instant::now());
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            nc.close();
            published
        })
    };
    // Let w1 handle some traffic alone first.
    assert!(wait_until(Duration::from_secs(10), || ledger
        .handlers()
        .len()
        >= 40));

    let w2 = start_worker(&url, "w2", &ledger);
    let settled = wait_until(Duration::from_secs(20), || {
        let (a, b) = (w1.manager.assignment(), w2.manager.assignment());
        a.len() + b.len() == PARTITIONS
            && !b.is_empty()
            && w1.manager.state() == State::Stable
            && w2.manager.state() == State::Stable
            && w1.consumer.partitions().len() == a.len()
            && w2.consumer.partitions().len() == b.len()
    });
    assert!(settled, "rebalance did not settle");
    // Keep publishing a while after the rebalance.
    let after = ledger.handlers().len();
    assert!(wait_until(Duration::from_secs(10), || ledger
        .handlers()
        .len()
        >= after + 80));
    stop_publishing.store(true, Ordering::SeqCst);
    let published = publisher.join().expect("publisher");

    // Every message is handled (the work queue empties).
    let probe = nats::connect(&url).expect("connect");
    let drained = wait_until(Duration::from_secs(20), || {
        stream_messages(&probe, "ORDERS") == Some(0) && ledger.handlers().len() >= published.len()
    });
    let handlers = ledger.handlers();
    let missing: Vec<_> = published
        .keys()
        .filter(|k| !handlers.contains_key(*k))
        .take(10)
        .collect();
    assert!(
        drained && missing.is_empty(),
        "unhandled messages, e.g. {missing:?}; stream has {:?}",
        stream_messages(&probe, "ORDERS")
    );

    // No handler call outside its worker's ownership: in particular none by
    // an old owner after its release.
    let outside = ledger.calls_outside_ownership();
    assert!(outside.is_empty(), "{outside:?}");
    assert!(
        ledger.overlapping_owners().is_empty(),
        "{:?}",
        ledger.overlapping_owners()
    );

    // The partitions that moved to w2: every message published after the
    // grant was handled by w2, and only by w2.
    let moved = ledger.granted("w2");
    assert!(!moved.is_empty());
    let mut checked = 0;
    for ((p, n), at) in &published {
        if !moved.contains(p) {
            continue;
        }
        let grant = ledger.grant_time("w2", p).expect("grant time");
        if *at > grant {
            let by = &handlers[&(p.clone(), *n)];
            assert!(
                by.iter().all(|(w, _)| w == "w2"),
                "{p}#{n} published after the move was handled by {by:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no message was published after the move");
    let duplicates = handlers.values().filter(|v| v.len() > 1).count();
    eprintln!(
        "published {} messages, {} moved partitions, {checked} checked after the move, {duplicates} handled twice",
        published.len(),
        moved.len()
    );

    // Graceful stops release through the helper; then the helpers stop.
    w2.manager.stop().expect("stop w2");
    w1.manager.stop().expect("stop w1");
    let t = Instant::now();
    w1.consumer.stop().expect("consumer stop");
    w2.consumer.stop().expect("consumer stop");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "helpers took {:?} to stop",
        t.elapsed()
    );
    assert!(w1.consumer.partitions().is_empty() && w2.consumer.partitions().is_empty());
    probe.close();
}

#[test]
fn rejects_streams_that_are_not_work_queues() {
    let server = NatsServer::start();
    let url = server.url();
    create_stream(&url, "limits", "LOGS", "logs.>");
    let err = JetStreamConsumer::start(
        parti::store::nats::connect(&url).expect("connect"),
        JetStreamConfig::new("LOGS", "w1", "logs.{id}"),
        |_, _| Ok(()),
    )
    .expect_err("limits stream must be rejected");
    assert!(err.to_string().contains("workqueue"), "{err}");
    let err = JetStreamConsumer::start(
        parti::store::nats::connect(&url).expect("connect"),
        JetStreamConfig::new("MISSING", "w1", "logs.{id}"),
        |_, _| Ok(()),
    )
    .expect_err("a missing stream must be rejected");
    assert!(err.to_string().contains("stream not found"), "{err}");
}

#[test]
fn stop_returns_within_its_deadline_while_nats_is_frozen() {
    let server = NatsServer::start();
    let url = server.url();
    create_stream(&url, "workqueue", "ORDERS", "orders.>");
    let consumer = JetStreamConsumer::start(
        parti::store::nats::connect(&url).expect("connect"),
        js_config("w1"),
        |_, _| Ok(()),
    )
    .expect("start");
    let a = parti::Assignment::new(1, 1, None, [(Partition::new("p0"), 1)]);
    consumer.apply(&parti::AssignmentChange::between(
        &parti::Assignment::default(),
        &a,
    ));
    assert_eq!(consumer.partitions().len(), 1);
    server.freeze();
    let t = Instant::now();
    let _ = consumer.stop();
    drop(consumer);
    let bound = Duration::from_millis(300) + Duration::from_secs(1) + Duration::from_secs(3);
    server.thaw();
    assert!(
        t.elapsed() <= bound + Duration::from_millis(500),
        "stop took {:?}",
        t.elapsed()
    );
}

/// A consumer of another name that still filters a partition (left by a
/// crashed worker configured with another prefix, or by an older version's
/// one-consumer-per-worker layout) makes a work-queue stream refuse the new
/// owner's consumer. The new owner finds and deletes it at once, long before
/// the server would drop it, and gets every message, old ones included.
#[test]
fn a_stale_overlapping_consumer_is_replaced_at_once() {
    let server = NatsServer::start();
    let url = server.url();
    create_stream(&url, "workqueue", "ORDERS", "orders.>");
    let nc = nats::connect(&url).expect("connect");
    // The "crashed" worker's consumer: filters p0, nobody pulls.
    let ghost = serde_json::json!({
        "stream_name": "ORDERS",
        "config": {
            "durable_name": "ghost",
            "ack_policy": "explicit",
            "filter_subject": "orders.p0.>",
            "inactive_threshold": 60_000_000_000u64,
        }
    });
    let reply = nc
        .request_timeout(
            "$JS.API.CONSUMER.CREATE.ORDERS.ghost",
            ghost.to_string(),
            Duration::from_secs(2),
        )
        .expect("ghost consumer");
    assert!(!String::from_utf8_lossy(&reply.data).contains("\"error\""));
    for n in 0..10u64 {
        nc.request_timeout("orders.p0.created", n.to_string(), Duration::from_secs(2))
            .expect("publish");
    }
    let ledger = Ledger::default();
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = errors.clone();
    let handler_ledger = ledger.clone();
    let consumer = JetStreamConsumer::start_with_error_hook(
        parti::store::nats::connect(&url).expect("connect"),
        js_config("w1"),
        move |p, msg| {
            let start = Instant::now();
            let n: u64 = String::from_utf8_lossy(&msg.data).parse()?;
            handler_ledger.handled("w1", p.id(), n, start);
            Ok(())
        },
        Some(Box::new(move |e| sink.lock().unwrap().push(e.to_string()))),
    )
    .expect("start");
    let a = parti::Assignment::new(1, 1, None, [(Partition::new("p0"), 1)]);
    let t = Instant::now();
    consumer.apply(&parti::AssignmentChange::between(
        &parti::Assignment::default(),
        &a,
    ));
    let all = wait_until(Duration::from_secs(15), || ledger.handlers().len() == 10);
    assert!(
        all,
        "handled {} of 10; errors {:?}",
        ledger.handlers().len(),
        errors.lock().unwrap()
    );
    let took = t.elapsed();
    // The ghost would live 60 s; the new owner deleted it.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let info = nc
        .request_timeout(
            "$JS.API.CONSUMER.INFO.ORDERS.ghost",
            "",
            Duration::from_secs(2),
        )
        .expect("consumer info");
    assert!(
        String::from_utf8_lossy(&info.data).contains("10014"),
        "the ghost consumer is still there"
    );
    eprintln!("all handled after {took:?}");
    consumer.stop().expect("stop");
    nc.close();
}

/// A consumer the server refuses for one partition (here: the stream's
/// consumer limit is reached) is reported and retried for that partition
/// alone; the other partition's messages keep flowing meanwhile.
#[test]
fn a_refused_consumer_stops_only_its_own_partition() {
    let server = NatsServer::start();
    let url = server.url();
    let nc = nats::connect(&url).expect("connect");
    let body = serde_json::json!({
        "name": "ORDERS",
        "subjects": ["orders.>"],
        "retention": "workqueue",
        "storage": "memory",
        "max_consumers": 1,
    });
    let reply = nc
        .request_timeout(
            "$JS.API.STREAM.CREATE.ORDERS",
            body.to_string(),
            Duration::from_secs(5),
        )
        .expect("stream create");
    assert!(!String::from_utf8_lossy(&reply.data).contains("\"error\""));
    let ledger = Ledger::default();
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = errors.clone();
    let handler_ledger = ledger.clone();
    let consumer = JetStreamConsumer::start_with_error_hook(
        parti::store::nats::connect(&url).expect("connect"),
        js_config(GROUP),
        move |p, msg| {
            let n: u64 = String::from_utf8_lossy(&msg.data).parse()?;
            handler_ledger.handled("w1", p.id(), n, Instant::now());
            Ok(())
        },
        Some(Box::new(move |e| sink.lock().unwrap().push(e.to_string()))),
    )
    .expect("start");
    let a = parti::Assignment::new(
        1,
        1,
        None,
        [(Partition::new("p0"), 1), (Partition::new("p1"), 1)],
    );
    consumer.apply(&parti::AssignmentChange::between(
        &parti::Assignment::default(),
        &a,
    ));
    // One of the two got the only consumer; the other is refused, again
    // and again.
    assert!(wait_until(Duration::from_secs(5), || errors
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains("consumer reset"))
        .count()
        >= 2));
    for n in 0..20u64 {
        for p in ["p0", "p1"] {
            nc.request_timeout(
                &format!("orders.{p}.created"),
                n.to_string(),
                Duration::from_secs(2),
            )
            .expect("publish");
        }
    }
    let handled_by_partition = || {
        let mut counts = BTreeMap::<String, usize>::new();
        for (p, _) in ledger.handlers().keys() {
            *counts.entry(p.clone()).or_default() += 1;
        }
        counts
    };
    assert!(
        wait_until(Duration::from_secs(5), || handled_by_partition()
            .values()
            .any(|c| *c == 20)),
        "the partition with a consumer did not get its messages: {:?}; errors {:?}",
        handled_by_partition(),
        errors.lock().unwrap().first()
    );
    let counts = handled_by_partition();
    assert_eq!(counts.len(), 1, "both partitions flowed: {counts:?}");
    consumer.stop().expect("stop");
    nc.close();
}
