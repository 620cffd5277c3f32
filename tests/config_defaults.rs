//! On real NATS: a config that changes only the heartbeat pair (the other
//! fields at their defaults, whose 2 s operation timeout would not fit an
//! 800 ms TTL) starts and gets an assignment, as does `Config::fast()`.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod support;

use std::time::Duration;

use parti::source::StaticSource;
use parti::{Config, Manager, Partition};
use support::NatsServer;

fn start(url: &str, group: &str, config: Config) -> Manager {
    let nc = parti::store::nats::connect(url).expect("connect");
    Manager::builder(nc, group)
        .config(config)
        .partitions(StaticSource::new(
            (0..4).map(|i| Partition::new(format!("p{i}"))),
        ))
        .start()
        .unwrap_or_else(|e| panic!("{group}: start failed: {e}"))
}

#[test]
fn a_fast_heartbeat_over_the_defaults_starts_and_gets_an_assignment() {
    let server = NatsServer::start();
    let config = Config {
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_ttl: Duration::from_millis(800),
        // Only so that the test does not wait the default 30 s cold start.
        cold_start_window: Duration::from_millis(300),
        ..Config::default()
    };
    assert!(
        config.operation_timeout * 2 > config.heartbeat_ttl,
        "the conflict this test is about"
    );
    let m = start(&server.url(), "derived", config);
    assert_eq!(m.assignment().len(), 4);
    assert!(m.health().is_heartbeat_confirmed(), "{:?}", m.health());
    m.stop().expect("stop");
}

#[test]
fn the_fast_preset_starts_and_gets_an_assignment() {
    let server = NatsServer::start();
    let m = start(&server.url(), "fast", Config::fast());
    assert_eq!(m.assignment().len(), 4);
    m.stop().expect("stop");
}
