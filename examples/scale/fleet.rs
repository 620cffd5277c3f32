//! `scale scale M P [W]`: M managers in this process, each with its own
//! connection, on one nats-server, sharing P partitions, cold-start window
//! W s; how long until all are Stable with every partition owned once,
//! their threads and memory, and the steady-state KV write rates.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parti::source::StaticSource;
use parti::{Config, Manager, Partition, State};

use super::{Res, Server};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 4
}

/// Every one of `partitions` owned by exactly one manager.
fn managers_own_once(list: &[Manager], partitions: usize) -> bool {
    let assignments: Vec<_> = list.iter().map(|m| m.assignment()).collect();
    if assignments.iter().map(|a| a.len()).sum::<usize>() != partitions {
        return false;
    }
    let ids: std::collections::HashSet<&str> = assignments
        .iter()
        .flat_map(|a| a.partitions().iter().map(|p| p.id()))
        .collect();
    ids.len() == partitions
}

pub fn run(managers: usize, partitions: usize, window: Duration) -> Res<()> {
    let server = Server::start()?;
    let config = Config {
        heartbeat_interval: Duration::from_secs(1),
        heartbeat_ttl: Duration::from_secs(4),
        worker_id_ttl: Duration::from_secs(20),
        election_ttl: Duration::from_secs(3),
        cold_start_window: window,
        planned_scale_window: Duration::from_secs(3),
        startup_timeout: Duration::from_secs(60),
        operation_timeout: Duration::from_secs(1),
        ..Config::default()
    };
    // One list shared by every manager's source (only the leader reads
    // it), so the figures per manager are parti's own.
    let source = StaticSource::new((0..partitions).map(|i| Partition::new(format!("p{i}"))));
    // (threads and memory below include each manager's NATS connection)
    let (threads0, rss0) = (threads(), rss_kib());
    let t = Instant::now();
    let conns: Vec<nats::Connection> = (0..managers)
        .map(|_| parti::store::nats::connect(&server.url()))
        .collect::<Result<_, _>>()?;
    let connected = t.elapsed();
    let t0 = Instant::now();
    // Started from a few threads at once, as a fleet's processes would be.
    let spawners = 8;
    let per = managers.div_ceil(spawners).max(1);
    let mut conns = conns;
    let chunks: Vec<Vec<nats::Connection>> = std::iter::from_fn(|| {
        (!conns.is_empty()).then(|| conns.split_off(conns.len().saturating_sub(per)))
    })
    .collect();
    let count = std::sync::atomic::AtomicUsize::new(0);
    let list: Vec<Manager> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let (config, source, count) = (&config, &source, &count);
                scope.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|nc| {
                            let m = Manager::builder(nc, "scale")
                                .config(config.clone())
                                .partitions(source.clone())
                                .spawn();
                            let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            if n % 100 == 0 {
                                eprintln!("{:.1} s: {n} spawned", t0.elapsed().as_secs_f64());
                            }
                            m
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            match h.join() {
                Ok(Ok(ms)) => all.extend(ms),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("a spawning thread panicked".to_string()),
            }
        }
        Ok(all)
    })?;
    let spawned = t0.elapsed();
    eprintln!(
        "connected {managers} in {:.2} s, spawned them in {:.2} s",
        connected.as_secs_f64(),
        spawned.as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut report_at = Instant::now();
    // Stable everywhere is not enough: a worker that gave partitions up is
    // Stable before the receiver is granted them.
    while !(list.iter().all(|m| m.state() == State::Stable) && managers_own_once(&list, partitions))
    {
        let mut states: BTreeMap<String, usize> = BTreeMap::new();
        if Instant::now() >= report_at || Instant::now() > deadline {
            for m in &list {
                *states.entry(m.state().to_string()).or_default() += 1;
            }
            eprintln!("{:.1} s: {states:?}", t0.elapsed().as_secs_f64());
            report_at += Duration::from_secs(5);
        }
        if Instant::now() > deadline {
            stop_all(&list, per);
            return Err(format!("not all managers reached Stable: {states:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stable = t0.elapsed();
    let (threads1, rss1) = (threads(), rss_kib());
    // Steady-state write rate: every KV write is one stream message.
    let probe = nats::connect(server.url())?;
    let streams = [
        "KV_parti-scale-workers",
        "KV_parti-scale-leader",
        "KV_parti-scale-assignments",
    ];
    let before: Vec<u64> = streams
        .iter()
        .map(|s| server.stream_seq(&probe, s))
        .collect();
    let window = Duration::from_secs(10);
    std::thread::sleep(window);
    let after: Vec<u64> = streams
        .iter()
        .map(|s| server.stream_seq(&probe, s))
        .collect();
    let rates: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 / window.as_secs_f64())
        .collect();
    println!("| managers | partitions | connect all | spawn all (claim IDs) | all Stable (cold-start window {:?}) | threads / manager | RSS / manager | KV writes/s: heartbeats, lease, assignments | per worker per interval |", config.cold_start_window);
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {managers} | {partitions} | {:.2} s | {:.2} s | {:.2} s | {:.2} | {:.0} KiB | {:.1}, {:.1}, {:.1} | {:.2} |",
        connected.as_secs_f64(),
        spawned.as_secs_f64(),
        stable.as_secs_f64(),
        (threads1 - threads0) as f64 / managers as f64,
        (rss1.saturating_sub(rss0)) as f64 / managers as f64,
        rates[0],
        rates[1],
        rates[2],
        rates[0] * config.heartbeat_interval.as_secs_f64() / managers as f64,
    );
    let bound = config.cold_start_window + Duration::from_secs(2);
    println!(
        "all Stable {:.2} s after the first start: {} the cold-start window + 2 s ({:.0} s)",
        stable.as_secs_f64(),
        if stable <= bound {
            "within"
        } else {
            "NOT within"
        },
        bound.as_secs_f64()
    );
    let t = Instant::now();
    stop_all(&list, per);
    println!("stopping all took {:.2} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Stops every manager, `per` at a time on each of several threads.
fn stop_all(list: &[Manager], per: usize) {
    std::thread::scope(|scope| {
        for chunk in list.chunks(per.max(1)) {
            scope.spawn(move || chunk.iter().for_each(|m| drop(m.stop())));
        }
    });
}
