use std::time::Duration;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn field_of(config: &Config) -> Option<(&'static str, String)> {
    match config.validate() {
        Err(Error::InvalidConfig { field, reason }) => Some((field, reason)),
        Err(Error::InvalidName { .. }) => Some(("worker_id_prefix", String::new())),
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(()) => None,
    }
}

#[test]
fn presets_are_valid_and_unchanged_by_resolution() {
    for preset in [Config::default(), Config::fast()] {
        assert_eq!(preset.resolved().unwrap(), preset);
    }
}

#[test]
fn fast_heartbeat_with_the_other_defaults_resolves() {
    let config = Config {
        heartbeat_interval: ms(200),
        heartbeat_ttl: ms(800),
        ..Config::default()
    };
    let r = config.resolved().unwrap();
    assert_eq!(r.heartbeat_interval, ms(200));
    assert_eq!(r.heartbeat_ttl, ms(800));
    assert!(r.operation_timeout * 2 <= ms(800), "{r:?}");
    assert_eq!(r.operation_timeout, ms(800) / 3);
    // Fields without a conflict keep their default.
    assert_eq!(r.election_ttl, Config::default().election_ttl);
    assert_eq!(r.worker_id_ttl, Config::default().worker_id_ttl);
}

#[test]
fn a_ttl_alone_derives_the_interval_and_the_timeout() {
    let r = Config {
        heartbeat_ttl: ms(800),
        ..Config::default()
    }
    .resolved()
    .unwrap();
    assert_eq!(r.heartbeat_interval, ms(800) / 3);
    assert_eq!(r.operation_timeout, ms(800) / 3);
}

#[test]
fn an_interval_alone_derives_the_ttl_and_the_id_ttl() {
    let r = Config {
        heartbeat_interval: Duration::from_secs(20),
        ..Config::default()
    }
    .resolved()
    .unwrap();
    assert_eq!(r.heartbeat_ttl, Duration::from_secs(60));
    assert_eq!(r.worker_id_ttl, Duration::from_secs(300));
    assert_eq!(r.operation_timeout, Config::default().operation_timeout);
}

#[test]
fn a_short_lease_derives_the_timeout() {
    let r = Config {
        election_ttl: ms(900),
        ..Config::default()
    }
    .resolved()
    .unwrap();
    assert_eq!(r.operation_timeout, ms(300));
}

#[test]
fn explicit_values_that_cannot_work_name_the_field_and_a_fit() {
    let (field, reason) = field_of(&Config {
        heartbeat_ttl: ms(800),
        operation_timeout: ms(500),
        ..Config::default()
    })
    .unwrap();
    assert_eq!(field, "operation_timeout");
    assert!(reason.contains("400ms or less"), "{reason}");

    let (field, reason) = field_of(&Config {
        heartbeat_interval: ms(500),
        heartbeat_ttl: ms(600),
        ..Config::default()
    })
    .unwrap();
    assert_eq!(field, "heartbeat_ttl");
    assert!(reason.contains("1s or more"), "{reason}");

    let (field, reason) = field_of(&Config {
        worker_id_ttl: Duration::from_secs(5),
        ..Config::default()
    })
    .unwrap();
    assert_eq!(field, "worker_id_ttl");
    assert!(reason.contains("6s or more"), "{reason}");
}

#[test]
fn a_value_written_out_equal_to_its_default_also_follows() {
    // Indistinguishable from leaving it out: documented on `resolved`.
    let r = Config {
        heartbeat_ttl: ms(800),
        operation_timeout: Config::default().operation_timeout,
        ..Config::default()
    }
    .resolved()
    .unwrap();
    assert_eq!(r.operation_timeout, ms(800) / 3);
}

#[test]
fn rejects_each_bad_field_by_name() {
    let cases: Vec<(&str, Config)> = vec![
        (
            "heartbeat_interval",
            Config {
                heartbeat_interval: Duration::ZERO,
                ..Config::default()
            },
        ),
        (
            "heartbeat_ttl",
            Config {
                heartbeat_ttl: Duration::ZERO,
                ..Config::default()
            },
        ),
        (
            "heartbeat_ttl",
            Config {
                heartbeat_interval: Duration::from_secs(1),
                heartbeat_ttl: ms(1500),
                ..Config::default()
            },
        ),
        (
            "election_ttl",
            Config {
                election_ttl: ms(20),
                operation_timeout: ms(10),
                ..Config::default()
            },
        ),
        (
            "restart_ratio",
            Config {
                restart_ratio: 0.0,
                ..Config::default()
            },
        ),
        (
            "restart_ratio",
            Config {
                restart_ratio: 1.5,
                ..Config::default()
            },
        ),
        (
            "operation_timeout",
            Config {
                operation_timeout: Duration::from_secs(4),
                ..Config::default()
            },
        ),
        (
            "worker_id_prefix",
            Config {
                worker_id_prefix: "bad prefix".into(),
                ..Config::default()
            },
        ),
        (
            "max_workers",
            Config {
                max_workers: 0,
                ..Config::default()
            },
        ),
        (
            "replicas",
            Config {
                replicas: 6,
                ..Config::default()
            },
        ),
    ];
    for (field, config) in cases {
        match field_of(&config) {
            Some((f, _)) => assert_eq!(f, field, "{config:?}"),
            None => panic!("{field}: expected InvalidConfig, got Ok"),
        }
    }
}
