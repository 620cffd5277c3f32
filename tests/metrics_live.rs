//! The measurements operators alert on, from a live group on a real
//! nats-server: the leader reports the unowned partitions and their
//! partition-seconds (the SLI) — all of them unowned through the cold
//! start, none once settled — and how long the rebalance took to be carried
//! out; a frozen server is a store incident and a `degraded` alert on every
//! worker.

mod group;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use group::{exactly_once, fast_config, manager_report, partitions};
use parti::metrics::Metrics;
use parti::source::StaticSource;
use parti::{Manager, State};
use support::{wait_until, NatsServer};

const N: usize = 12;

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Seen>>);

#[derive(Default, Debug)]
struct Seen {
    unowned: Vec<usize>,
    unowned_seconds: f64,
    handoffs: Vec<Duration>,
    incidents: usize,
    alerts: Vec<&'static str>,
}

impl Metrics for Recorder {
    fn partitions_unowned(&self, count: usize) {
        self.0.lock().unwrap().unowned.push(count);
    }
    fn unowned_partition_seconds(&self, seconds: f64) {
        self.0.lock().unwrap().unowned_seconds += seconds;
    }
    fn handoff_latency(&self, latency: Duration) {
        self.0.lock().unwrap().handoffs.push(latency);
    }
    fn store_incident(&self) {
        self.0.lock().unwrap().incidents += 1;
    }
    fn alert(&self, kind: &'static str) {
        self.0.lock().unwrap().alerts.push(kind);
    }
}

#[test]
fn the_leader_measures_unowned_partitions_and_handoffs_and_workers_count_incidents() {
    let server = NatsServer::start();
    let url = server.url();
    let config = fast_config();
    let recorders: Vec<Recorder> = (0..2).map(|_| Recorder::default()).collect();
    let ms: Vec<Manager> = recorders
        .iter()
        .map(|r| {
            let nc = parti::store::nats::connect(&url).expect("connect");
            Manager::builder(nc, "sli")
                .config(config.clone())
                .partitions(StaticSource::new(partitions(N)))
                .metrics(r.clone())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let refs: Vec<&Manager> = ms.iter().collect();
    assert!(
        wait_until(Duration::from_secs(15), || exactly_once(
            &manager_report(&refs),
            N
        ) && ms
            .iter()
            .all(|m| m.state() == State::Stable)),
        "the group never settled"
    );
    let leader = ms.iter().position(|m| m.is_leader()).expect("a leader");
    let seen = || recorders[leader].0.lock().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || seen().unowned.last() == Some(&0)),
        "settled, the leader reports no unowned partition: {:?}",
        seen().unowned
    );
    {
        let s = seen();
        assert_eq!(s.unowned.first(), Some(&N), "all unowned at first: {s:?}");
        // Every partition waited out (most of) the cold-start window.
        let floor = N as f64 * config.cold_start_window.as_secs_f64() / 2.0;
        assert!(
            s.unowned_seconds >= floor,
            "{} partition-seconds unowned, expected at least {floor}",
            s.unowned_seconds
        );
        assert!(
            !s.handoffs.is_empty(),
            "the cold start's rebalance was measured"
        );
        assert!(
            s.handoffs.iter().all(|d| *d < Duration::from_secs(10)),
            "{:?}",
            s.handoffs
        );
    }
    let follower = 1 - leader;
    assert!(
        recorders[follower].0.lock().unwrap().unowned.is_empty(),
        "only the leader measures ownership"
    );

    // An outage longer than the fencing deadline (self-fencing at 3/4 of
    // `heartbeat_ttl`): one incident per worker. Counted once the worker
    // has acted on it, which may be after the thaw.
    server.freeze();
    std::thread::sleep(config.heartbeat_ttl * 2);
    server.thaw();
    assert!(
        wait_until(Duration::from_secs(10), || recorders.iter().all(|r| r
            .0
            .lock()
            .unwrap()
            .incidents
            == 1)),
        "not one store incident per worker: {:?}",
        recorders
            .iter()
            .map(|r| r.0.lock().unwrap().incidents)
            .collect::<Vec<_>>()
    );
    assert!(
        wait_until(Duration::from_secs(5), || recorders.iter().all(|r| r
            .0
            .lock()
            .unwrap()
            .alerts
            .contains(&"degraded"))),
        "no degraded alert: {:?}",
        recorders
            .iter()
            .map(|r| r.0.lock().unwrap().alerts.clone())
            .collect::<Vec<_>>()
    );
    for m in &ms {
        m.stop().expect("stop");
    }
}
