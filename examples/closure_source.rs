//! Partitions that change at run time: a closure source (`FnSource`) reads a
//! shared list (it could read a database or a config file); after the list
//! changes, `Manager::refresh_partitions` makes the leader re-read it and
//! rebalance. Any worker may call it.
//!
//! ```text
//! NATS_URL=127.0.0.1:4222 cargo run --release --example closure_source
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use parti::source::FnSource;
use parti::{Config, Error, Manager, Partition};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let tenants: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(vec!["acme".into(), "globex".into()]));
    let list = tenants.clone();
    let source = FnSource::new(move || {
        let list = list.lock().map_err(|_| Error::Plugin {
            what: "partition source",
            reason: "tenant list lock poisoned".into(),
        })?;
        Ok(list
            .iter()
            .map(|t| Partition::new(format!("tenant.{t}")))
            .collect())
    });
    let manager = Manager::builder(parti::store::nats::connect(&url)?, "tenants")
        .config(Config {
            heartbeat_interval: Duration::from_millis(250),
            heartbeat_ttl: Duration::from_millis(1000),
            election_ttl: Duration::from_millis(1500),
            cold_start_window: Duration::from_secs(1),
            rebalance_cooldown: Duration::from_millis(500),
            operation_timeout: Duration::from_millis(400),
            ..Config::default()
        })
        .partitions(source)
        .on_assignment_changed(|c| println!("+{:?} -{:?}", c.added(), c.removed()))
        .start()?;
    println!("owns {} partitions", manager.assignment().len());

    tenants
        .lock()
        .map_err(|_| "lock poisoned")?
        .push("initech".into());
    manager.refresh_partitions()?;
    // Bounded wait until the new partition shows up.
    for _ in 0..50 {
        if manager.assignment().contains("tenant.initech") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "after adding initech: {:?}",
        manager.assignment().partitions()
    );

    tenants
        .lock()
        .map_err(|_| "lock poisoned")?
        .retain(|t| t != "acme");
    manager.refresh_partitions()?;
    for _ in 0..50 {
        if !manager.assignment().contains("tenant.acme") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "after removing acme: {:?}",
        manager.assignment().partitions()
    );
    manager.stop()?;
    Ok(())
}
