//! Opening a connection on loopback against a nats-server the bench starts
//! itself: `cargo bench --bench connect`.
//!
//! - `parti_connect`: [`parti::store::nats::connect`], parti's options.
//! - `parti_connect_with`: [`parti::store::nats::connect_with`] (no auth).
//! - `crate_default`: `nats::Options::new().connect`, the crate's defaults,
//!   whose reconnect delay sleeps 0–1 s before even the first attempt.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use parti::store::nats::{connect, connect_with, Auth};

fn connects(c: &mut Criterion) {
    let server = support::NatsServer::start();
    let url = server.url();
    let mut group = c.benchmark_group("connect");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    // Closing is part of each iteration so connections do not pile up; it
    // is one PING/PONG on loopback.
    group.bench_function("parti_connect", |b| {
        b.iter(|| connect(&url).expect("connect").close())
    });
    group.bench_function("parti_connect_with", |b| {
        b.iter(|| connect_with(&url, &Auth::None).expect("connect").close())
    });
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("crate_default", |b| {
        b.iter(|| {
            nats::Options::new()
                .connect(url.as_str())
                .expect("connect")
                .close()
        })
    });
    group.finish();
}

criterion_group!(benches, connects);
criterion_main!(benches);
