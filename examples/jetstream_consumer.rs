//! The Kafka consumer group replacement: two workers share the partitions of
//! a JetStream work-queue stream. Each partition has one durable pull
//! consumer, pulled from by the partition's owner; a handler returning `Ok`
//! acks, `Err` naks (redelivery). A second worker joins half-way and takes
//! over some partitions; their unfinished messages follow them.
//! (`examples/consumer_failover.rs` measures crashes and moves.)
//!
//! ```text
//! NATS_URL=127.0.0.1:4222 cargo run --release --example jetstream_consumer
//! ```
//! Needs nats-server ≥ 2.10 with JetStream (`nats-server -js`).
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parti::source::StaticSource;
use parti::subscription::{JetStreamConfig, JetStreamConsumer};
use parti::{Config, Manager, Partition};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const STREAM: &str = "ORDERS";
const PARTITIONS: usize = 8;

/// Creates the work-queue stream (idempotent for the same config).
fn ensure_stream(nc: &nats::Connection) -> Result<()> {
    let body = serde_json::json!({
        "name": STREAM,
        "subjects": ["orders.>"],
        "retention": "workqueue",
        "storage": "file",
    });
    let reply = nc.request_timeout(
        &format!("$JS.API.STREAM.CREATE.{STREAM}"),
        body.to_string(),
        Duration::from_secs(5),
    )?;
    let v: serde_json::Value = serde_json::from_slice(&reply.data)?;
    match v.get("error") {
        // 10058: exists with another config; fine if it is ours already.
        Some(e) if e["err_code"] != 10058 => Err(format!("stream create: {e}").into()),
        _ => Ok(()),
    }
}

struct Worker {
    manager: Manager,
    consumer: Arc<JetStreamConsumer>,
}

fn start_worker(url: &str, name: &str, handled: Arc<AtomicU64>) -> Result<Worker> {
    let who = name.to_string();
    // The consumers' name prefix is the same on every worker (here the group
    // name): partition 3's consumer is `orders_3`, whoever owns it.
    let consumer = Arc::new(JetStreamConsumer::start(
        parti::store::nats::connect(url)?,
        JetStreamConfig::new(STREAM, "orders", "orders.{id}.>"),
        move |partition, msg| {
            let n = handled.fetch_add(1, Ordering::Relaxed) + 1;
            if n % 50 == 0 {
                println!(
                    "{who}: {n} handled, last {} on partition {partition}",
                    msg.subject
                );
            }
            Ok(()) // Err(e) would nak: the message comes back
        },
    )?);
    let hook = consumer.clone();
    let label = name.to_string();
    let manager = Manager::builder(parti::store::nats::connect(url)?, "orders")
        .config(Config {
            heartbeat_interval: Duration::from_millis(250),
            heartbeat_ttl: Duration::from_millis(1000),
            election_ttl: Duration::from_millis(1500),
            cold_start_window: Duration::from_secs(1),
            planned_scale_window: Duration::from_secs(1),
            rebalance_cooldown: Duration::from_millis(500),
            operation_timeout: Duration::from_millis(400),
            ..Config::default()
        })
        .partitions(StaticSource::new(
            (0..PARTITIONS).map(|i| Partition::new(i.to_string())),
        ))
        .on_assignment_changed(move |change| {
            // Returns once removed partitions are no longer handled here and
            // the added ones' consumers are ready.
            hook.apply(change);
            println!(
                "{label}: now owns {:?}",
                change
                    .assignment()
                    .partitions()
                    .iter()
                    .map(|p| p.id())
                    .collect::<Vec<_>>()
            );
        })
        .start()?;
    Ok(Worker { manager, consumer })
}

fn main() -> Result<()> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let nc = parti::store::nats::connect(&url)?;
    ensure_stream(&nc)?;
    let handled = Arc::new(AtomicU64::new(0));
    let a = start_worker(&url, "a", handled.clone())?;
    let publish = |from: u64, to: u64| -> Result<()> {
        for n in from..to {
            let subject = format!("orders.{}.created", n % PARTITIONS as u64);
            // A request gets the JetStream ack: the message is stored.
            nc.request_timeout(&subject, n.to_string(), Duration::from_secs(2))?;
        }
        Ok(())
    };
    publish(0, 200)?;
    let b = start_worker(&url, "b", handled.clone())?;
    publish(200, 400)?;
    // Bounded wait for the work queue to drain.
    for _ in 0..100 {
        if handled.load(Ordering::Relaxed) >= 400 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "handled {} of 400 messages",
        handled.load(Ordering::Relaxed)
    );
    // Graceful: each stop releases the worker's partitions through the hook.
    b.manager.stop()?;
    a.manager.stop()?;
    a.consumer.stop()?;
    b.consumer.stop()?;
    Ok(())
}
