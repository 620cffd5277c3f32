//! A group across three labelled zones: six workers (two per zone, the
//! zone-a ones of capacity 2), partitions that prefer a zone and one per
//! zone that requires it. Shows where everything lands, what `on_prepare`
//! announces before a planned move, the zone-c partition parked while zone
//! c is gone, and everything back home when zone c returns.
//!
//! ```text
//! NATS_URL=127.0.0.1:4222 cargo run --release --example zones
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parti::source::StaticSource;
use parti::{Config, Manager, Partition};

const ZONES: [&str; 3] = ["a", "b", "c"];

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

/// Per zone partitions that prefer it (seven for zone a, whose workers have
/// twice the capacity, three for the others) and one that requires it: each
/// worker's share of the load is a whole number of its zone's partitions.
fn partitions() -> Vec<Partition> {
    let mut out = Vec::new();
    for z in ZONES {
        for i in 0..if z == "a" { 7 } else { 3 } {
            out.push(Partition::new(format!("{z}.{i}")).prefer_label("zone", z));
        }
        out.push(Partition::new(format!("{z}.only")).require_label("zone", z));
    }
    out
}

fn start(
    url: &str,
    zone: &'static str,
    t0: Instant,
) -> Result<Manager, Box<dyn std::error::Error>> {
    let nc = parti::store::nats::connect(url)?;
    let capacity = if zone == "a" { 2 } else { 1 };
    Ok(Manager::builder(nc, "zones-demo")
        .config(config())
        .label("zone", zone)
        .capacity(capacity)
        .partitions(StaticSource::new(partitions()))
        .on_prepare(move |ps| {
            let ids: Vec<&str> = ps.iter().map(|p| p.id()).collect();
            println!(
                "{:>6.2}s  zone {zone}: on_prepare, coming: {ids:?}",
                t0.elapsed().as_secs_f64()
            );
        })
        // Returns at once (the ID is claimed in the background): the whole
        // group then joins within one cold-start window instead of one
        // worker at a time.
        .spawn()?)
}

/// One line per worker: zone, capacity share and partitions.
fn show(title: &str, workers: &[(&'static str, Manager)]) {
    println!("-- {title}");
    for (zone, m) in workers {
        let ids: Vec<String> = m
            .assignment()
            .partitions()
            .iter()
            .map(|p| p.id().to_string())
            .collect();
        println!("   {} zone {zone}: {ids:?}", m.worker_id());
    }
}

/// Whether every worker holds only partitions of its own zone.
fn all_home(workers: &[(&'static str, Manager)]) -> bool {
    workers.iter().all(|(z, m)| {
        m.assignment()
            .partitions()
            .iter()
            .all(|p| p.id().starts_with(z))
    })
}

/// Stops workers in parallel (one at a time would hand partitions along).
fn stop_all(workers: &[(&'static str, Manager)]) {
    std::thread::scope(|s| {
        for (_, m) in workers {
            s.spawn(|| {
                let _ = m.stop();
            });
        }
    });
}

/// Waits until `expected` partitions are owned, each once, and every zone's
/// own partitions are home if `home` (at most `timeout`).
fn wait_owned(
    workers: &[(&'static str, Manager)],
    expected: usize,
    home: bool,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let mut owners: BTreeMap<String, usize> = BTreeMap::new();
        for (_, m) in workers {
            for p in m.assignment().partitions() {
                *owners.entry(p.id().to_string()).or_default() += 1;
            }
        }
        if owners.len() == expected
            && owners.values().all(|n| *n == 1)
            && (!home || all_home(workers))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let t0 = Instant::now();
    let total = partitions().len();
    let mut workers: Vec<(&'static str, Manager)> = Vec::new();
    for z in ["a", "a", "b", "b", "c", "c"] {
        workers.push((z, start(&url, z, t0)?));
    }
    if !wait_owned(&workers, total, true, Duration::from_secs(20)) {
        return Err("the group did not settle with every zone's partitions home".into());
    }
    show("six workers, three zones", &workers);

    // Zone c goes away (both its workers leave): its preferred partitions
    // move to other zones, c.only is parked.
    let gone: Vec<(&'static str, Manager)> = workers.drain(4..).collect();
    stop_all(&gone);
    if !wait_owned(&workers, total - 1, false, Duration::from_secs(20)) {
        return Err("zones a and b did not take over".into());
    }
    show("zone c gone: c.only parked", &workers);

    // Zone c returns: partitions go home, announced by on_prepare first.
    for z in ["c", "c"] {
        workers.push((z, start(&url, z, t0)?));
    }
    if !wait_owned(&workers, total, true, Duration::from_secs(20)) {
        return Err("zone c did not get its partitions back".into());
    }
    show("zone c back, everything home", &workers);
    stop_all(&workers);
    Ok(())
}
