//! Service features on a real nats-server: the KV partition source reacting
//! by itself, periodic refresh, metrics, health.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use group::{fast_config, partitions, wait_until, Observer};
use parti::metrics::Metrics;
use parti::source::{FnSource, KvSource, StaticSource};
use parti::store::nats::NatsBackend;
use parti::store::{BucketConfig, KvBackend};
use parti::{Error, Manager, Partition, RebalanceKind, State};
use support::NatsServer;

fn owned(ms: &[&Manager]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for m in ms {
        for p in m.assignment().partitions() {
            *count.entry(p.id().to_string()).or_insert(0) += 1;
        }
    }
    count
}

fn kv_source(url: &str, group: &str) -> KvSource {
    let conn = parti::store::nats::connect(url).expect("connect");
    KvSource::connect(conn, group, Duration::from_secs(2)).expect("open partitions bucket")
}

#[test]
fn kv_source_add_and_remove_rebalance_without_refresh() {
    let server = NatsServer::start();
    let url = server.url();
    let admin = kv_source(&url, "kvs");
    for p in partitions(4) {
        admin.add(&p).unwrap();
    }
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let start = |errors: Arc<Mutex<Vec<String>>>| {
        Manager::builder(parti::store::nats::connect(&url).unwrap(), "kvs")
            .config(fast_config())
            .partitions(kv_source(&url, "kvs"))
            .on_error(move |e| {
                if let Error::Corrupt { key, .. } = e {
                    errors.lock().unwrap().push(key.clone());
                }
            })
            .start()
            .expect("start")
    };
    let a = start(errors.clone());
    let b = start(errors.clone());
    let observer = Observer::new(&url, "kvs");
    let ms = [&a, &b];
    let all_once = |n: usize| {
        let o = owned(&ms);
        o.len() == n && o.values().all(|c| *c == 1)
    };
    assert!(
        wait_until(Duration::from_secs(10), || all_once(4)),
        "{:?}",
        owned(&ms)
    );

    admin.add(&Partition::with_weight("p4", 2)).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || all_once(5)
            && owned(&ms).contains_key("p4")),
        "p4 not assigned: {:?}",
        owned(&ms)
    );
    admin.remove("p0").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || all_once(4)
            && !owned(&ms).contains_key("p0")),
        "p0 still assigned: {:?}",
        owned(&ms)
    );
    assert!(observer
        .rebalances()
        .contains(&RebalanceKind::PartitionsChanged));

    // A corrupt value is reported and skipped; the rest keeps working.
    let backend = NatsBackend::new(
        parti::store::nats::connect(&url).unwrap(),
        Duration::from_secs(2),
    );
    let raw = backend
        .open(&BucketConfig::new(
            KvSource::bucket_name("kvs").unwrap(),
            None,
        ))
        .unwrap();
    raw.put("broken", b"{not json").unwrap();
    admin.add(&Partition::new("p5")).unwrap();
    assert!(wait_until(Duration::from_secs(10), || owned(&ms).contains_key("p5")));
    assert!(!owned(&ms).contains_key("broken"));
    assert!(wait_until(Duration::from_secs(5), || errors
        .lock()
        .unwrap()
        .iter()
        .any(|k| k == "broken")));
    assert_eq!(admin.list().unwrap().len(), 5);
    a.stop().unwrap();
    b.stop().unwrap();
}

#[test]
fn refresh_every_picks_up_a_changed_closure_source() {
    let server = NatsServer::start();
    let list = Arc::new(Mutex::new(partitions(3)));
    let l = list.clone();
    let m = Manager::builder(
        parti::store::nats::connect(&server.url()).unwrap(),
        "periodic",
    )
    .config(fast_config())
    .partitions(FnSource::new(move || Ok(l.lock().unwrap().clone())))
    .refresh_every(Duration::from_millis(300))
    .start()
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || m.assignment().len() == 3));
    list.lock().unwrap().push(Partition::new("extra"));
    assert!(
        wait_until(Duration::from_secs(5), || m.assignment().len() == 4),
        "the periodic refresh did not pick up the new partition"
    );
    m.stop().unwrap();
}

/// Counts every call, by name and argument.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<BTreeMap<String, u64>>>);

impl Recorder {
    fn bump(&self, key: String) {
        *self.0.lock().unwrap().entry(key).or_insert(0) += 1;
    }
    fn get(&self, key: &str) -> u64 {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
    fn sum_prefix(&self, prefix: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }
}

impl Metrics for Recorder {
    fn rebalance(&self, kind: RebalanceKind) {
        self.bump(format!("rebalance:{kind}"));
    }
    fn assignment_version(&self, version: u64) {
        self.0.lock().unwrap().insert("version".into(), version);
    }
    fn partitions_owned(&self, count: usize) {
        self.0.lock().unwrap().insert("owned".into(), count as u64);
    }
    fn leader(&self, is_leader: bool) {
        self.0
            .lock()
            .unwrap()
            .insert("leader".into(), is_leader as u64);
    }
    fn heartbeat_failure(&self) {
        self.bump("heartbeat_failure".into());
    }
    fn kv_failure(&self, bucket: &str, op: &'static str) {
        self.bump(format!("kv_failure:{bucket}:{op}"));
    }
    fn kv_latency(&self, bucket: &str, op: &'static str, _latency: Duration) {
        self.bump(format!("kv_op:{bucket}:{op}"));
    }
}

#[test]
fn metrics_follow_rebalances() {
    let mut server = NatsServer::start();
    let url = server.url();
    let rec_a = Recorder::default();
    let start = |rec: &Recorder| {
        Manager::builder(parti::store::nats::connect(&url).unwrap(), "metrics")
            .config(fast_config())
            .partitions(StaticSource::new(partitions(8)))
            .metrics(rec.clone())
            .start()
            .unwrap()
    };
    let a = start(&rec_a);
    assert!(wait_until(Duration::from_secs(5), || rec_a.get("owned") == 8));
    assert_eq!(rec_a.get("rebalance:cold_start"), 1);
    assert_eq!(rec_a.get("leader"), 1);
    let v1 = rec_a.get("version");
    assert!(v1 > 0);
    assert!(
        rec_a.sum_prefix("kv_op:parti-metrics-workers:update") > 0,
        "heartbeats are timed"
    );
    assert_eq!(rec_a.sum_prefix("kv_failure"), 0);

    let rec_b = Recorder::default();
    let b = start(&rec_b);
    assert!(wait_until(Duration::from_secs(10), || rec_a.get("owned")
        == 4
        && rec_b.get("owned") == 4));
    assert_eq!(rec_a.get("rebalance:planned_scale"), 1);
    assert!(rec_a.get("version") > v1);
    assert_eq!(rec_b.get("leader"), 0);
    assert_eq!(
        rec_b.sum_prefix("rebalance:"),
        0,
        "only the leader rebalances"
    );

    // An outage shows up as heartbeat and KV failures.
    server.kill();
    assert!(wait_until(Duration::from_secs(10), || rec_b
        .get("heartbeat_failure")
        > 0
        && rec_b.sum_prefix("kv_failure:") > 0));
    drop(a);
    drop(b);
}

#[test]
fn health_in_stable_and_after_the_server_dies() {
    let mut server = NatsServer::start();
    let config = fast_config();
    let m = Manager::builder(
        parti::store::nats::connect(&server.url()).unwrap(),
        "health",
    )
    .config(config.clone())
    .partitions(StaticSource::new(partitions(6)))
    .start()
    .unwrap();
    m.wait_for_state(State::Stable, Duration::from_secs(5))
        .unwrap();
    let h = m.health();
    assert_eq!(h.state, State::Stable);
    assert!(h.is_leader);
    assert_eq!(h.worker_id, m.worker_id());
    assert!(
        h.since_last_heartbeat
            .is_some_and(|d| d < config.heartbeat_ttl),
        "{h:?}"
    );
    assert!(h.assignment_version > 0);
    assert_eq!(h.partitions, 6);
    assert_eq!(h.degraded_since, None);
    assert!(h.is_ready() && h.is_live());

    server.kill();
    assert!(
        wait_until(Duration::from_secs(10), || m
            .health()
            .degraded_since
            .is_some()),
        "{:?}",
        m.health()
    );
    // NATS down is not the process's fault: still live, no longer confirmed.
    assert!(wait_until(Duration::from_secs(5), || !m
        .health()
        .is_heartbeat_confirmed()));
    let h = m.health();
    assert!(h.is_live(), "{h:?}");
    assert_eq!(h.state, State::Degraded);
    assert!(
        h.since_last_heartbeat
            .is_some_and(|d| d > config.heartbeat_ttl),
        "{h:?}"
    );
    assert!(!h.is_ready());
    // Let the outage last a little and check the clock moves.
    let before = h.degraded_since.unwrap_or_default();
    assert!(wait_until(Duration::from_secs(2), || m
        .health()
        .degraded_since
        .is_some_and(|d| d > before)));

    server.restart();
    assert!(wait_until(Duration::from_secs(15), || m.health().is_live()
        && m.health().degraded_since.is_none()));
    m.stop().unwrap();
}

#[test]
fn a_zero_refresh_period_is_rejected() {
    let backend = Arc::new(parti::store::memory::MemoryBackend::default());
    let err = parti::ManagerBuilder::with_backend(backend, "zero")
        .refresh_every(Duration::ZERO)
        .start()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "refresh_every",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_leader_waits_for_a_failing_source_instead_of_revoking_everything() {
    let server = NatsServer::start();
    let calls = Arc::new(Mutex::new(0u32));
    let c = calls.clone();
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let s = sizes.clone();
    let m = Manager::builder(
        parti::store::nats::connect(&server.url()).unwrap(),
        "flaky-source",
    )
    .config(fast_config())
    .partitions(FnSource::new(move || {
        let mut n = c.lock().unwrap();
        *n += 1;
        if *n <= 3 {
            Err(Error::Plugin {
                what: "partition source",
                reason: "not reachable yet".into(),
            })
        } else {
            Ok(partitions(5))
        }
    }))
    .on_assignment_changed(move |change| s.lock().unwrap().push(change.assignment().len()))
    .start()
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || m.assignment().len() == 5));
    assert!(*calls.lock().unwrap() > 3);
    // Callbacks run on their own thread, after the snapshot is installed.
    assert!(wait_until(Duration::from_secs(5), || !sizes
        .lock()
        .unwrap()
        .is_empty()));
    let sizes = sizes.lock().unwrap().clone();
    assert_eq!(sizes.first(), Some(&5), "{sizes:?}");
    m.stop().unwrap();
}

/// CPU time this process has used (Linux: utime + stime from /proc).
#[cfg(target_os = "linux")]
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[cfg(target_os = "linux")]
#[test]
fn a_stuck_callback_does_not_make_the_manager_spin() {
    let server = NatsServer::start();
    let config = parti::Config {
        handoff_timeout: Duration::from_millis(300),
        ..fast_config()
    };
    let m = Manager::builder(parti::store::nats::connect(&server.url()).unwrap(), "stuck")
        .config(config)
        .partitions(StaticSource::new(partitions(4)))
        .on_assignment_changed(|_| std::thread::sleep(Duration::from_secs(3)))
        .start()
        .unwrap();
    // Past the handoff timeout while the callback still sleeps: measure
    // how busy the process is over one second.
    std::thread::sleep(Duration::from_millis(600));
    let before = cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_time() - before;
    assert!(used < Duration::from_millis(500), "{used:?} of CPU in 1 s");
    drop(m);
}
