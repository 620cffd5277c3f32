//! A live demo: several workers share 16 partitions through a local
//! nats-server. Three workers start together, a fourth joins, one leaves
//! gracefully; every change is printed as it happens.
//!
//! ```text
//! NATS_URL=127.0.0.1:4222 cargo run --release --example quickstart
//! ```
//! (`bash scripts/demo.sh` starts a throw-away server and runs this.)

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parti::source::StaticSource;
use parti::{Config, Manager, Partition, State};

fn config() -> Config {
    // Short windows so the demo moves quickly; the defaults suit production.
    Config {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_ttl: Duration::from_millis(1000),
        worker_id_ttl: Duration::from_secs(5),
        election_ttl: Duration::from_millis(1500),
        cold_start_window: Duration::from_secs(2),
        planned_scale_window: Duration::from_secs(1),
        emergency_grace: Duration::from_millis(500),
        rebalance_cooldown: Duration::from_millis(500),
        operation_timeout: Duration::from_millis(400),
        ..Config::default()
    }
}

fn start_worker(url: &str, t0: Instant) -> Result<Manager, Box<dyn std::error::Error>> {
    let nc = parti::store::nats::connect(url)?;
    // The callbacks learn the worker's ID once `start` has claimed it.
    let name: Arc<OnceLock<String>> = Arc::default();
    let label = name.clone();
    let manager = Manager::builder(nc, "quickstart")
        .config(config())
        .partitions(StaticSource::new(
            (0..16).map(|i| Partition::new(format!("orders.{i}"))),
        ))
        .on_assignment_changed(move |c| {
            let ids: Vec<&str> = c.assignment().partitions().iter().map(|p| p.id()).collect();
            println!(
                "{:>6.2}s  {:<9} v{:<3} +{} -{}  now {:?}",
                t0.elapsed().as_secs_f64(),
                label.get().map(String::as_str).unwrap_or("(new)"),
                c.assignment().version(),
                c.added().len(),
                c.removed().len(),
                ids
            );
        })
        .on_state_changed(move |from, to| {
            if to == State::Emergency || to == State::Scaling || to == State::Rebalancing {
                println!(
                    "{:>6.2}s  leader: {from} -> {to}",
                    t0.elapsed().as_secs_f64()
                );
            }
        })
        .start()?;
    let _ = name.set(manager.worker_id().to_string());
    println!(
        "{:>6.2}s  {} started{}",
        t0.elapsed().as_secs_f64(),
        manager.worker_id(),
        if manager.is_leader() { " (leader)" } else { "" }
    );
    Ok(manager)
}

fn show(workers: &[Arc<Manager>]) {
    for m in workers {
        println!(
            "          {:<9} {:<11} {:>2} partitions{}",
            m.worker_id(),
            m.state().to_string(),
            m.assignment().len(),
            if m.is_leader() { "  <- leader" } else { "" }
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_string());
    let t0 = Instant::now();
    println!(
        "three workers start together (cold start waits {:?})",
        config().cold_start_window
    );
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || start_worker(&url, t0).map_err(|e| e.to_string()))
        })
        .collect();
    let mut workers = Vec::new();
    for h in handles {
        workers.push(Arc::new(h.join().map_err(|_| "worker thread panicked")??));
    }
    std::thread::sleep(Duration::from_millis(500));
    show(&workers);

    println!(
        "\na fourth worker joins (planned scale: waits {:?}, then hands over)",
        config().planned_scale_window
    );
    workers.push(Arc::new(start_worker(&url, t0)?));
    std::thread::sleep(Duration::from_secs(2));
    show(&workers);

    println!("\none worker leaves gracefully: its partitions move at once");
    let leaving = workers.remove(1);
    leaving.stop()?;
    std::thread::sleep(Duration::from_millis(500));
    show(&workers);

    println!("\nstopping everyone");
    for m in &workers {
        m.stop()?;
    }
    Ok(())
}
