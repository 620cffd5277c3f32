//! `scale profiles [RUNS_DEFAULT] [RUNS_FAST]`: the two presets side by
//! side. For each of `Config::default()` and `Config::fast()` (every timing
//! handed to `parti worker` child processes with `--set`, so a crash is a
//! real SIGKILL), runs of 4 workers over 60 partitions:
//! - KV writes per second per worker in a steady group (the server's stream
//!   sequences of the group's three buckets, over a quiet interval);
//! - a follower killed → the 3 survivors own every partition once;
//! - then the leader killed → a survivor applies a newer epoch's assignment
//!   (new leader publishing), and the 2 survivors own every partition once.
//!
//! With the defaults a run takes about a minute (30 s cold start, 9 s and
//! ~15 s of failover): few runs.

use std::time::{Duration, Instant};

use parti::Config;

use super::{owned_once, percentile, wait, Res, Server, Worker};

const PARTITIONS: usize = 60;
const WORKERS: usize = 4;

/// `--set` flags reproducing every timing of `config` in `parti worker`.
fn flags(config: &Config) -> Vec<String> {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    [
        ("heartbeat_interval", config.heartbeat_interval),
        ("heartbeat_ttl", config.heartbeat_ttl),
        ("worker_id_ttl", config.worker_id_ttl),
        ("election_ttl", config.election_ttl),
        ("cold_start_window", config.cold_start_window),
        ("planned_scale_window", config.planned_scale_window),
        ("emergency_grace", config.emergency_grace),
        ("rebalance_cooldown", config.rebalance_cooldown),
        ("startup_timeout", config.startup_timeout),
        ("shutdown_timeout", config.shutdown_timeout),
        ("operation_timeout", config.operation_timeout),
        ("handoff_timeout", config.handoff_timeout),
    ]
    .iter()
    .flat_map(|(f, d)| ["--set".to_string(), format!("{f}={}", ms(*d))])
    .collect()
}

#[derive(Default)]
struct Figures {
    writes_per_worker: Vec<f64>,
    crash_ms: Vec<f64>,
    publish_ms: Vec<f64>,
    lead_owned_ms: Vec<f64>,
}

fn kv_seq(server: &Server, nc: &nats::Connection, group: &str) -> u64 {
    ["workers", "leader", "assignments"]
        .iter()
        .map(|b| server.stream_seq(nc, &format!("KV_parti-{group}-{b}")))
        .sum()
}

fn one_run(
    bin: &std::path::PathBuf,
    server: &Server,
    nc: &nats::Connection,
    group: &str,
    config: &Config,
    out: &mut Figures,
) -> Res<()> {
    let flags = flags(config);
    let workers: Vec<Worker> = (0..WORKERS)
        .map(|_| Worker::spawn(bin, &server.url(), group, PARTITIONS, &flags))
        .collect::<Res<_>>()?;
    let all: Vec<&Worker> = workers.iter().collect();
    let settle =
        config.cold_start_window + config.planned_scale_window * 3 + Duration::from_secs(20);
    if !wait(settle, || {
        owned_once(&all, PARTITIONS) && all.iter().filter(|w| w.is_leader()).count() == 1
    }) {
        return Err(format!("{group}: group did not settle").into());
    }
    // A quiet interval: heartbeats and lease renewals only.
    let quiet = (config.heartbeat_interval * 10).max(Duration::from_secs(5));
    let (s0, t0) = (kv_seq(server, nc, group), Instant::now());
    std::thread::sleep(quiet);
    let writes = kv_seq(server, nc, group).saturating_sub(s0) as f64;
    out.writes_per_worker
        .push(writes / t0.elapsed().as_secs_f64() / WORKERS as f64);

    let failover_limit = (config.heartbeat_ttl + config.emergency_grace + config.election_ttl) * 4;
    let mut workers = workers;
    let f = workers
        .iter()
        .position(|w| !w.is_leader())
        .ok_or("no follower")?;
    let mut victim = workers.remove(f);
    let t = Instant::now();
    let _ = victim.child.kill();
    let rest: Vec<&Worker> = workers.iter().collect();
    if !wait(failover_limit, || owned_once(&rest, PARTITIONS)) {
        return Err(format!("{group}: crash failover did not finish").into());
    }
    out.crash_ms.push(t.elapsed().as_secs_f64() * 1000.0);

    let l = workers
        .iter()
        .position(|w| w.is_leader())
        .ok_or("no leader")?;
    let old_epoch = workers[l]
        .last("assignment")
        .and_then(|(_, e)| e["epoch"].as_u64())
        .unwrap_or(0);
    let mut leader = workers.remove(l);
    let t = Instant::now();
    let _ = leader.child.kill();
    let rest: Vec<&Worker> = workers.iter().collect();
    let newer = |w: &&Worker| {
        w.last("assignment")
            .and_then(|(_, e)| e["epoch"].as_u64())
            .is_some_and(|e| e > old_epoch)
    };
    let mut published = None;
    let owned = wait(failover_limit, || {
        if published.is_none() && rest.iter().any(newer) {
            published = Some(t.elapsed());
        }
        published.is_some() && owned_once(&rest, PARTITIONS)
    });
    let (Some(published), true) = (published, owned) else {
        return Err(format!("{group}: leader failover did not finish").into());
    };
    out.publish_ms.push(published.as_secs_f64() * 1000.0);
    out.lead_owned_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    drop((victim, leader));
    Ok(())
}

fn stats(v: &[f64]) -> String {
    let mut v = v.to_vec();
    format!(
        "{:.0} / {:.0} ms",
        percentile(&mut v, 0.5),
        percentile(&mut v, 1.0)
    )
}

pub fn run(bin: &std::path::PathBuf, runs_default: usize, runs_fast: usize) -> Res<()> {
    let server = Server::start()?;
    let nc = nats::connect(server.url())?;
    println!("| profile (runs) | worker crash → all owned, p50 / max | leader crash → new leader publishing, p50 / max | leader crash → all owned, p50 / max | KV writes/s per worker (measured) | from the config: heartbeats/s per worker + lease renewals/s (leader) |");
    println!("|---|---|---|---|---|---|");
    for (name, config, runs) in [
        ("default", Config::default(), runs_default),
        ("fast", Config::fast(), runs_fast),
    ] {
        if runs == 0 {
            continue;
        }
        let mut figures = Figures::default();
        for run in 0..runs {
            let group = format!("{name}{run}");
            one_run(bin, &server, &nc, &group, &config, &mut figures)?;
            eprintln!(
                "{group}: crash {:.0} ms, leader publishing {:.0} ms, all owned {:.0} ms, {:.2} writes/s/worker",
                figures.crash_ms[run],
                figures.publish_ms[run],
                figures.lead_owned_ms[run],
                figures.writes_per_worker[run]
            );
        }
        let mean = figures.writes_per_worker.iter().sum::<f64>() / runs as f64;
        println!(
            "| `Config::{name}()` ({runs}) | {} | {} | {} | {mean:.2} | {:.2} + {:.2} |",
            stats(&figures.crash_ms),
            stats(&figures.publish_ms),
            stats(&figures.lead_owned_ms),
            1.0 / config.heartbeat_interval.as_secs_f64(),
            1.0 / config.lease_renew_interval().as_secs_f64(),
        );
    }
    nc.close();
    Ok(())
}
