//! Round trips of the NATS store on loopback against a nats-server the bench
//! starts itself: `cargo bench --bench kv`. The `crate_put` case is the
//! `nats` crate's own `Store::put`, for comparison (trap 7: ~5 ms). The
//! `heartbeat_write` group compares a heartbeat-sized compare-and-set on a
//! server with the default `sync_interval` and one with `sync_interval:
//! always` (an fsync per write: what docs/operations.md recommends for the
//! servers holding coordination buckets).
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use parti::store::nats::{connect, NatsBackend};
use parti::store::BucketConfig;

fn round_trips(c: &mut Criterion) {
    let server = support::NatsServer::start();
    let backend = NatsBackend::new(
        connect(&server.url()).expect("connect"),
        Duration::from_secs(2),
    );
    let store = backend
        .open_store(&BucketConfig::new("bench", None))
        .expect("open");
    use parti::store::KvStore;

    let mut group = c.benchmark_group("nats_store");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("put", |b| b.iter(|| store.put("k", b"value").expect("put")));
    group.bench_function("get", |b| b.iter(|| store.get("k").expect("get")));
    let mut rev = store.put("cas", b"0").expect("put");
    group.bench_function("cas_update", |b| {
        b.iter(|| {
            rev = store.update("cas", b"value", rev).expect("update");
        })
    });
    group.finish();

    let conn = connect(&server.url()).expect("connect");
    let kv = nats::jetstream::new(conn)
        .key_value("bench")
        .expect("bucket through the crate");
    let mut group = c.benchmark_group("nats_crate");
    group.sample_size(20);
    group.bench_function("crate_put", |b| {
        b.iter(|| kv.put("k2", b"value").expect("put"))
    });
    group.finish();
}

/// A server whose JetStream config is `jetstream` (the rest from the CLI).
fn server_with(jetstream: &str) -> support::NatsServer {
    support::start_with_config(&format!("jetstream {{ {jetstream} }}\n"), |url| {
        connect(url).is_ok_and(|nc| {
            let ok = nc
                .request_timeout("$JS.API.INFO", "", Duration::from_millis(500))
                .is_ok_and(|m| !String::from_utf8_lossy(&m.data).contains("\"error\""));
            nc.close();
            ok
        })
    })
}

fn heartbeat_writes(c: &mut Criterion) {
    use parti::store::{KvBackend, KvStore};
    // About the size of a worker's heartbeat record.
    let record = vec![b'x'; 220];
    let mut group = c.benchmark_group("heartbeat_write");
    group.measurement_time(Duration::from_secs(4));
    for (name, jetstream) in [
        ("sync_default", ""),
        ("sync_always", "sync_interval: always"),
    ] {
        let server = server_with(jetstream);
        let backend = NatsBackend::new(
            connect(&server.url()).expect("connect"),
            Duration::from_secs(2),
        );
        let store = backend
            .open_store(&BucketConfig::new("beats", Some(Duration::from_secs(60))))
            .expect("open");
        let mut rev = store.put("worker-0", &record).expect("put");
        group.bench_function(name, |b| {
            b.iter(|| {
                rev = store.update("worker-0", &record, rev).expect("update");
            })
        });
        backend.close();
    }
    group.finish();
}

criterion_group!(benches, round_trips, heartbeat_writes);
criterion_main!(benches);
