//! The manager's threads over the in-process store: fast checks of the whole
//! shell (no NATS needed for these; the NATS suites cover the real thing).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parti::source::StaticSource;
use parti::store::memory::MemoryBackend;
use parti::{Config, Manager, ManagerBuilder, Partition, State};

fn config() -> Config {
    Config {
        heartbeat_interval: Duration::from_millis(50),
        heartbeat_ttl: Duration::from_millis(200),
        worker_id_ttl: Duration::from_millis(1000),
        election_ttl: Duration::from_millis(300),
        cold_start_window: Duration::from_millis(300),
        planned_scale_window: Duration::from_millis(200),
        emergency_grace: Duration::from_millis(100),
        rebalance_cooldown: Duration::from_millis(100),
        startup_timeout: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(3),
        operation_timeout: Duration::from_millis(100),
        ..Config::default()
    }
}

fn start(backend: &MemoryBackend, n: usize) -> Manager {
    let _ = env_logger::builder().is_test(true).try_init();
    ManagerBuilder::with_backend(Arc::new(backend.client()), "mem")
        .config(config())
        .partitions(StaticSource::new(
            (0..n).map(|i| Partition::new(format!("p{i}"))),
        ))
        .start()
        .expect("start")
}

fn owners(managers: &[&Manager]) -> BTreeMap<String, Vec<String>> {
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in managers {
        for p in m.assignment().partitions() {
            owners
                .entry(p.id().to_string())
                .or_default()
                .push(m.worker_id().to_string());
        }
    }
    owners
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

fn exactly_once(managers: &[&Manager], n: usize) -> bool {
    let o = owners(managers);
    o.len() == n && o.values().all(|v| v.len() == 1)
}

#[test]
fn three_workers_share_partitions_and_one_leads() {
    let backend = MemoryBackend::default();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let b = backend.client();
            std::thread::spawn(move || start(&b, 30))
        })
        .collect();
    let ms: Vec<Manager> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let refs: Vec<&Manager> = ms.iter().collect();
    assert!(
        wait_until(Duration::from_secs(5), || exactly_once(&refs, 30)),
        "{:?}",
        owners(&refs)
    );
    assert_eq!(ms.iter().filter(|m| m.is_leader()).count(), 1);
    let mut ids: Vec<&str> = ms.iter().map(|m| m.worker_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    for m in &ms {
        m.wait_for_state(State::Stable, Duration::from_secs(5))
            .unwrap();
    }
    // Graceful stop of one: the others take over its partitions.
    ms[2].stop().unwrap();
    let rest = [&ms[0], &ms[1]];
    assert!(
        wait_until(Duration::from_secs(5), || exactly_once(&rest, 30)),
        "{:?}",
        owners(&rest)
    );
}
