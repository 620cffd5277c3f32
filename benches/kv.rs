//! Round trips of the NATS store on loopback against a nats-server the bench
//! starts itself: `cargo bench --bench kv`. The `crate_put` case is the
//! `nats` crate's own `Store::put`, for comparison (trap 7: ~5 ms).
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

criterion_group!(benches, round_trips);
criterion_main!(benches);
