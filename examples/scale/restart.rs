//! `scale restart M RUNS`: M managers on one nats-server that is killed
//! (SIGKILL), kept down for an outage longer than the heartbeat TTL (so
//! every manager fences itself) and started again on the same port and
//! storage; measures the time from the server accepting connections again
//! until every manager is Stable and every partition owned once.

use std::time::{Duration, Instant};

use parti::source::StaticSource;
use parti::{Config, Manager, Partition, State};

use super::{percentile, Res, Server};

const PARTITIONS: usize = 120;
const OUTAGE: Duration = Duration::from_secs(2);

fn all_stable_once(list: &[Manager]) -> bool {
    list.iter().all(|m| m.state() == State::Stable)
        && list.iter().map(|m| m.assignment().len()).sum::<usize>() == PARTITIONS
}

fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

pub fn run(managers: usize, runs: usize) -> Res<()> {
    let mut server = Server::start()?;
    let config = Config {
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_ttl: Duration::from_millis(800),
        emergency_grace: Duration::from_millis(300),
        election_ttl: Duration::from_millis(1200),
        cold_start_window: Duration::from_millis(1000),
        planned_scale_window: Duration::from_millis(500),
        rebalance_cooldown: Duration::from_millis(200),
        operation_timeout: Duration::from_millis(300),
        worker_id_ttl: Duration::from_secs(10),
        startup_timeout: Duration::from_secs(30),
        ..Config::default()
    };
    let parts: Vec<Partition> = (0..PARTITIONS)
        .map(|i| Partition::new(format!("p{i}")))
        .collect();
    let list: Vec<Manager> = (0..managers)
        .map(|_| {
            let nc = parti::store::nats::connect(&server.url())?;
            Ok(Manager::builder(nc, "restart")
                .config(config.clone())
                .partitions(StaticSource::new(parts.clone()))
                .spawn()?)
        })
        .collect::<Res<_>>()?;
    if !wait(Duration::from_secs(60), || all_stable_once(&list)) {
        return Err("the group did not settle".into());
    }
    let mut back = Vec::new();
    for run in 0..runs {
        let up = server.restart(OUTAGE)?;
        let fenced = list.iter().filter(|m| m.state() != State::Stable).count();
        // Every manager fenced itself during the outage (longer than the
        // heartbeat TTL); wait for all of them to be Stable again.
        if !wait(Duration::from_secs(60), || all_stable_once(&list)) {
            return Err(format!("run {run}: not all managers Stable again within 60 s").into());
        }
        let t = up.elapsed().as_secs_f64() * 1000.0;
        println!(
            "run {run}: {fenced} of {managers} not Stable when the server came back; all Stable {t:.0} ms later"
        );
        back.push(t);
        std::thread::sleep(Duration::from_secs(1));
    }
    println!(
        "| {managers} managers, {runs} restarts (outage {OUTAGE:?}) | server back → all Stable: p50 {:.0} ms, max {:.0} ms |",
        percentile(&mut back.clone(), 0.5),
        percentile(&mut back, 1.0)
    );
    for m in &list {
        let _ = m.stop();
    }
    Ok(())
}
