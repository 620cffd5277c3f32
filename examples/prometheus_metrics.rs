//! Exports a worker's [`Metrics`] in the Prometheus text format, with the
//! `prometheus-client` crate, on `/metrics`.
//!
//! ```text
//! NATS_URL=127.0.0.1:4222 LISTEN=127.0.0.1:9898 cargo run --example prometheus_metrics
//! curl 127.0.0.1:9898/metrics
//! ```
//! `RUN_FOR=SECONDS` stops it after that long (for CI); otherwise it runs
//! until killed.

#[path = "support/http.rs"]
mod http;

use std::net::TcpListener;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use parti::metrics::Metrics;
use parti::source::StaticSource;
use parti::{Config, Manager, Partition, RebalanceKind};
use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    bucket: String,
    op: String,
}

/// The metric handles; clones share their values, so the registry and the
/// manager see the same numbers. `pub` (with [`Exporter::new`]) because
/// `tests/monitoring_assets.rs` includes this file to learn exactly which
/// series the shipped dashboard and alerts may use.
#[derive(Clone)]
pub struct Exporter {
    rebalances: Family<KindLabel, Counter>,
    assignment_version: Gauge,
    partitions_owned: Gauge,
    leader: Gauge,
    heartbeat_failures: Counter,
    kv_failures: Family<OpLabels, Counter>,
    kv_latency: Family<OpLabels, Histogram>,
    partitions_unowned: Gauge,
    unowned_seconds: Counter<f64, AtomicU64>,
    handoff_latency: Histogram,
    store_incidents: Counter,
    alerts: Family<KindLabel, Counter>,
    parked_partitions: Gauge,
}

impl Exporter {
    /// Registers every `parti_*` metric in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let e = Exporter {
            rebalances: Family::default(),
            assignment_version: Gauge::default(),
            partitions_owned: Gauge::default(),
            leader: Gauge::default(),
            heartbeat_failures: Counter::default(),
            kv_failures: Family::default(),
            // 100 µs to about 3 s.
            kv_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.0, 16))
            }),
            partitions_unowned: Gauge::default(),
            unowned_seconds: Counter::default(),
            // 10 ms to about 80 s.
            handoff_latency: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            store_incidents: Counter::default(),
            alerts: Family::default(),
            parked_partitions: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("parti");
        r.register(
            "rebalances",
            "Rebalances computed by this worker as leader",
            e.rebalances.clone(),
        );
        r.register(
            "assignment_version",
            "Version of the installed assignment",
            e.assignment_version.clone(),
        );
        r.register(
            "partitions_owned",
            "Partitions this worker owns",
            e.partitions_owned.clone(),
        );
        r.register(
            "leader",
            "1 while this worker leads the group",
            e.leader.clone(),
        );
        r.register(
            "heartbeat_failures",
            "Heartbeats not confirmed",
            e.heartbeat_failures.clone(),
        );
        r.register("kv_failures", "Failed KV operations", e.kv_failures.clone());
        r.register(
            "kv_latency_seconds",
            "KV operation latency",
            e.kv_latency.clone(),
        );
        r.register(
            "partitions_unowned",
            "Partitions nobody can be working on now (reported by the leader)",
            e.partitions_unowned.clone(),
        );
        r.register(
            "unowned_partition_seconds",
            "Partition-seconds without an owner (reported by the leader)",
            e.unowned_seconds.clone(),
        );
        r.register(
            "handoff_latency_seconds",
            "From a rebalance decision until every partition is with its new owner",
            e.handoff_latency.clone(),
        );
        r.register(
            "store_incidents",
            "Outages of the store seen by this worker (it entered Degraded)",
            e.store_incidents.clone(),
        );
        r.register(
            "alerts",
            "Errors passed to on_error, by kind",
            e.alerts.clone(),
        );
        r.register(
            "parked_partitions",
            "Partitions no live worker may own by label (set by the leader)",
            e.parked_partitions.clone(),
        );
        e
    }
}

fn labels(bucket: &str, op: &str) -> OpLabels {
    OpLabels {
        bucket: bucket.to_string(),
        op: op.to_string(),
    }
}

impl Metrics for Exporter {
    fn rebalance(&self, kind: RebalanceKind) {
        let kind = kind.to_string();
        self.rebalances.get_or_create(&KindLabel { kind }).inc();
    }
    fn assignment_version(&self, version: u64) {
        self.assignment_version.set(version as i64);
    }
    fn partitions_owned(&self, count: usize) {
        self.partitions_owned.set(count as i64);
    }
    fn parked_partitions(&self, count: usize) {
        self.parked_partitions.set(count as i64);
    }
    fn leader(&self, is_leader: bool) {
        self.leader.set(is_leader as i64);
    }
    fn heartbeat_failure(&self) {
        self.heartbeat_failures.inc();
    }
    fn kv_failure(&self, bucket: &str, op: &'static str) {
        self.kv_failures.get_or_create(&labels(bucket, op)).inc();
    }
    fn kv_latency(&self, bucket: &str, op: &'static str, latency: Duration) {
        self.kv_latency
            .get_or_create(&labels(bucket, op))
            .observe(latency.as_secs_f64());
    }
    fn partitions_unowned(&self, count: usize) {
        self.partitions_unowned.set(count as i64);
    }
    fn unowned_partition_seconds(&self, seconds: f64) {
        self.unowned_seconds.inc_by(seconds);
    }
    fn handoff_latency(&self, latency: Duration) {
        self.handoff_latency.observe(latency.as_secs_f64());
    }
    fn store_incident(&self) {
        self.store_incidents.inc();
    }
    fn alert(&self, kind: &'static str) {
        let kind = kind.to_string();
        self.alerts.get_or_create(&KindLabel { kind }).inc();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:9898".into());
    let mut registry = Registry::default();
    let exporter = Exporter::new(&mut registry);
    let manager = Manager::builder(parti::store::nats::connect(&url)?, "metrics-demo")
        // A short cold-start window so a lone demo worker is assigned
        // quickly; the default (30 s) waits for a whole fleet to boot.
        .config(Config {
            cold_start_window: Duration::from_secs(2),
            ..Config::default()
        })
        .partitions(StaticSource::new(
            (0..8).map(|i| Partition::new(format!("p{i}"))),
        ))
        .metrics(exporter)
        .start()?;
    let listener = TcpListener::bind(&listen)?;
    println!("{} serving http://{listen}/metrics", manager.worker_id());
    let registry = Arc::new(registry);
    http::serve(listener, move |path| match path {
        "/metrics" => {
            let mut body = String::new();
            match encode(&mut body, &registry) {
                Ok(()) => (200, "text/plain; version=0.0.4", body),
                Err(e) => (500, "text/plain", format!("{e}\n")),
            }
        }
        _ => (404, "text/plain", "try /metrics\n".into()),
    });
    http::run_until_told();
    manager.stop()?;
    Ok(())
}
