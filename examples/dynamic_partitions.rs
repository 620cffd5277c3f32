//! Partitions that come and go at run time: two workers share the partitions
//! kept in the group's KV bucket, and rebalance by themselves as partitions
//! are added and removed (here by this program; in production by
//! `parti partitions add|remove` or any KV client).
//!
//! ```text
//! NATS_URL=127.0.0.1:4222 cargo run --example dynamic_partitions
//! ```

use std::time::{Duration, Instant};

use parti::source::KvSource;
use parti::{Config, Manager, Partition};

const GROUP: &str = "dynamic-demo";

fn config() -> Config {
    // Short windows so the demo moves quickly; the defaults suit production.
    Config {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_ttl: Duration::from_millis(1000),
        election_ttl: Duration::from_millis(1500),
        cold_start_window: Duration::from_secs(1),
        planned_scale_window: Duration::from_secs(1),
        rebalance_cooldown: Duration::from_millis(300),
        operation_timeout: Duration::from_millis(500),
        ..Config::default()
    }
}

fn source(url: &str) -> Result<KvSource, Box<dyn std::error::Error>> {
    let conn = parti::store::nats::connect(url)?;
    Ok(KvSource::connect(conn, GROUP, Duration::from_secs(2))?)
}

fn start(url: &str) -> Result<Manager, Box<dyn std::error::Error>> {
    Ok(Manager::builder(parti::store::nats::connect(url)?, GROUP)
        .config(config())
        .partitions(source(url)?)
        .start()?)
}

fn show(workers: &[&Manager], what: &str) {
    println!("after {what}:");
    for m in workers {
        let ids: Vec<String> = m
            .assignment()
            .partitions()
            .iter()
            .map(|p| p.id().to_string())
            .collect();
        println!("  {} owns {:?}", m.worker_id(), ids);
    }
}

/// Waits until the workers together own `n` partitions (or 10 s pass).
fn settle(workers: &[&Manager], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if workers.iter().map(|m| m.assignment().len()).sum::<usize>() == n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("not settled on {n} partitions within 10 s");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let admin = source(&url)?;
    // Start from a known list, whatever an earlier run left behind.
    for p in admin.list()? {
        admin.remove(p.id())?;
    }
    for i in 0..4 {
        admin.add(&Partition::new(format!("orders-{i}")))?;
    }
    let (a, b) = (start(&url)?, start(&url)?);
    let workers = [&a, &b];
    settle(&workers, 4);
    show(&workers, "start");

    admin.add(&Partition::with_weight("orders-big", 3))?;
    settle(&workers, 5);
    show(&workers, "adding orders-big (weight 3)");

    admin.remove("orders-0")?;
    admin.remove("orders-1")?;
    settle(&workers, 3);
    show(&workers, "removing orders-0 and orders-1");

    a.stop()?;
    b.stop()?;
    Ok(())
}
