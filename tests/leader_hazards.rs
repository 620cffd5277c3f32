//! What users and KV can hand the leader: a strategy or partition source that
//! panics, and values in KV that no parti process could have written (an
//! epoch above its revision, a version no group reaches). The group must
//! keep assigning every partition, and say what happened through `on_error`.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use group::{exactly_once, fast_config, manager_report, partitions};
use parti::source::{FnSource, PartitionSource, StaticSource};
use parti::strategy::{AssignmentStrategy, BoundedLoad};
use parti::{Config, Error, Manager, Partition, Placement};
use support::{wait_until, NatsServer};

const N: usize = 16;

/// Every error a manager reported, as text, with when it was reported.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<(Instant, Error)>>>);

impl Errors {
    fn sink(&self) -> impl Fn(&Error) + Send + Sync + 'static {
        let errors = self.0.clone();
        move |e: &Error| {
            errors
                .lock()
                .unwrap()
                .push((Instant::now(), clone_error(e)))
        }
    }

    /// When the first error matching `pred` was reported.
    fn first(&self, pred: impl Fn(&Error) -> bool) -> Option<Instant> {
        let errors = self.0.lock().unwrap();
        errors.iter().find(|(_, e)| pred(e)).map(|(t, _)| *t)
    }

    fn all(&self) -> Vec<String> {
        let errors = self.0.lock().unwrap();
        errors.iter().map(|(_, e)| e.to_string()).collect()
    }
}

/// `Error` is not `Clone`; keep the variants these tests look at.
fn clone_error(e: &Error) -> Error {
    match e {
        Error::PluginPanicked { what, message } => Error::PluginPanicked {
            what,
            message: message.clone(),
        },
        Error::Corrupt {
            bucket,
            key,
            reason,
        } => Error::Corrupt {
            bucket: bucket.clone(),
            key: key.clone(),
            reason: reason.clone(),
        },
        other => Error::Plugin {
            what: "other",
            reason: other.to_string(),
        },
    }
}

/// BoundedLoad, or a panic once `fail` is set.
struct FailingStrategy {
    fail: Arc<AtomicBool>,
}

impl AssignmentStrategy for FailingStrategy {
    fn assign(
        &self,
        workers: &[String],
        partitions: &[Partition],
        previous: &Placement,
    ) -> Result<Placement, Error> {
        if self.fail.load(Ordering::SeqCst) {
            panic!("strategy bug");
        }
        BoundedLoad::default().assign(workers, partitions, previous)
    }
}

fn builder(server: &NatsServer, group: &str, errors: &Errors) -> parti::ManagerBuilder {
    let nc = parti::store::nats::connect(&server.url()).expect("connect");
    Manager::builder(nc, group)
        .config(fast_config())
        .partitions(StaticSource::new(partitions(N)))
        .on_error(errors.sink())
}

/// How long after a leader resigned every partition must be owned again: a
/// new leader at once (the lease is deleted, not left to expire), or at
/// worst after a lease TTL; then a planned window at its stretched maximum,
/// or a cold-start window; plus a second for a loaded machine.
fn recovery_bound(c: &Config) -> Duration {
    c.election_ttl + (c.planned_scale_window * 3).max(c.cold_start_window) + Duration::from_secs(1)
}

fn all_owned(ms: &[&Manager]) -> bool {
    exactly_once(&manager_report(ms), N)
}

fn raw_put(server: &NatsServer, subject: &str, body: &[u8]) {
    let raw = nats::connect(server.url()).expect("raw connect");
    raw.request_timeout(subject, body, Duration::from_secs(2))
        .expect("kv put");
}

#[test]
fn a_panicking_strategy_on_the_leader_resigns_and_a_healthy_worker_leads() {
    let server = NatsServer::start();
    let config = fast_config();
    let (errors_a, errors_b) = (Errors::default(), Errors::default());
    // The issue's case: the first leader's strategy panics at cold start.
    let a = builder(&server, "hz-strategy", &errors_a)
        .strategy(FailingStrategy {
            fail: Arc::new(AtomicBool::new(true)),
        })
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || a.is_leader()),
        "a never led"
    );
    let b = builder(&server, "hz-strategy", &errors_b).spawn().unwrap();
    let panicked = |e: &Error| {
        matches!(
            e,
            Error::PluginPanicked {
                what: "strategy",
                ..
            }
        )
    };
    assert!(
        wait_until(config.cold_start_window * 3, || errors_a
            .first(panicked)
            .is_some()),
        "the strategy's panic was not reported: {:?}",
        errors_a.all()
    );
    let resigned_at = errors_a.first(panicked).unwrap();
    assert!(
        wait_until(recovery_bound(&config), || all_owned(&[&a, &b])),
        "not every partition owned within {:?} of the panic: {:?}",
        recovery_bound(&config),
        manager_report(&[&a, &b])
    );
    let took = resigned_at.elapsed();
    assert!(b.is_leader(), "b should lead once a resigned");
    assert!(
        !a.is_leader(),
        "a must not win the lease back while its code fails"
    );
    assert!(!a.assignment().is_empty(), "a still works its share");
    eprintln!("owned again {took:?} after the panic");
    a.stop().unwrap();
    b.stop().unwrap();
}

#[test]
fn a_panicking_partition_source_on_the_leader_resigns_and_a_healthy_worker_leads() {
    let server = NatsServer::start();
    let config = fast_config();
    let (errors_a, errors_b, errors_c) = (Errors::default(), Errors::default(), Errors::default());
    let fail = Arc::new(AtomicBool::new(false));
    let f = fail.clone();
    let source = FnSource::new(move || {
        if f.load(Ordering::SeqCst) {
            panic!("source bug");
        }
        StaticSource::new(partitions(N)).partitions()
    });
    let a = builder(&server, "hz-source", &errors_a)
        .partitions(source)
        .start()
        .unwrap();
    assert!(a.is_leader());
    let b = builder(&server, "hz-source", &errors_b).start().unwrap();
    assert!(
        wait_until(recovery_bound(&config), || all_owned(&[&a, &b])
            && b.assignment().len() == N / 2),
        "{:?}",
        manager_report(&[&a, &b])
    );
    fail.store(true, Ordering::SeqCst);
    a.refresh_partitions().unwrap();
    let panicked = |e: &Error| {
        matches!(
            e,
            Error::PluginPanicked {
                what: "partition source",
                ..
            }
        )
    };
    assert!(
        wait_until(Duration::from_secs(3), || errors_a
            .first(panicked)
            .is_some()),
        "the source's panic was not reported: {:?}",
        errors_a.all()
    );
    assert!(
        wait_until(config.election_ttl + Duration::from_secs(1), || b
            .is_leader()),
        "b did not take over the lease"
    );
    assert!(!a.is_leader());
    // The group keeps assigning under its new leader: a third worker gets
    // its share, and nothing is owned twice.
    let c = builder(&server, "hz-source", &errors_c).start().unwrap();
    assert!(
        wait_until(recovery_bound(&config), || all_owned(&[&a, &b, &c])
            && !c.assignment().is_empty()),
        "{:?}",
        manager_report(&[&a, &b, &c])
    );
    assert!(
        !a.is_leader(),
        "a must not win the lease back while its source fails"
    );
    for m in [a, b, c] {
        m.stop().unwrap();
    }
}

#[test]
fn a_lease_with_an_impossible_epoch_is_reported_and_a_joiner_still_gets_work() {
    let server = NatsServer::start();
    let config = fast_config();
    let (errors_a, errors_b) = (Errors::default(), Errors::default());
    let a = builder(&server, "hz-epoch", &errors_a).start().unwrap();
    // Any client with write access can put this; no parti leader could
    // have (an epoch is the revision of the write that took the lease).
    raw_put(
        &server,
        "$KV.parti-hz-epoch-leader.leader",
        br#"{"worker":"worker-9","instance":"forged","epoch":1000000000000}"#,
    );
    let b = builder(&server, "hz-epoch", &errors_b).spawn().unwrap();
    let corrupt = |e: &Error| matches!(e, Error::Corrupt { key, reason, .. } if key == "leader" && reason.contains("epoch"));
    assert!(
        wait_until(Duration::from_secs(5), || errors_b.first(corrupt).is_some()),
        "b did not report the forged lease: {:?}",
        errors_b.all()
    );
    // The forged lease is taken over after a TTL; then b joins in a planned
    // window.
    let bound = config.election_ttl * 2 + recovery_bound(&config);
    assert!(
        wait_until(bound, || all_owned(&[&a, &b]) && !b.assignment().is_empty()),
        "the joiner got no work within {bound:?}: {:?}",
        manager_report(&[&a, &b])
    );
    assert!(
        errors_a.first(corrupt).is_some(),
        "a saw it too: {:?}",
        errors_a.all()
    );
    a.stop().unwrap();
    b.stop().unwrap();
}

#[test]
fn records_with_a_version_no_group_reaches_are_reported_and_the_group_keeps_assigning() {
    let server = NatsServer::start();
    let config = fast_config();
    let (errors_a, errors_b, errors_c) = (Errors::default(), Errors::default(), Errors::default());
    let a = builder(&server, "hz-version", &errors_a).start().unwrap();
    assert!(a.is_leader());
    let b = builder(&server, "hz-version", &errors_b).start().unwrap();
    assert!(wait_until(recovery_bound(&config), || all_owned(&[&a, &b])
        && b.assignment().len() == N / 2));
    let before = b.assignment().version();
    let huge = u64::MAX;
    raw_put(
        &server,
        "$KV.parti-hz-version-assignments._meta",
        format!(
            r#"{{"version":{huge},"epoch":1,"reason":"cold_start","leader":"worker-0","workers":{{}},"partitions":{N},"unassigned":0}}"#
        )
        .as_bytes(),
    );
    raw_put(
        &server,
        "$KV.parti-hz-version-assignments.worker-7",
        format!(
            r#"{{"version":{huge},"epoch":1,"reason":"cold_start","instance":"x","incarnation":0,"partitions":[]}}"#
        )
        .as_bytes(),
    );
    // A new leader adopts what is published: the leader leaves, b takes
    // office and reads both records.
    a.stop().unwrap();
    let corrupt =
        |e: &Error| matches!(e, Error::Corrupt { reason, .. } if reason.contains("version"));
    assert!(
        wait_until(config.election_ttl + Duration::from_secs(2), || errors_b
            .first(corrupt)
            .is_some()),
        "b did not report the impossible versions: {:?}",
        errors_b.all()
    );
    assert!(wait_until(recovery_bound(&config), || all_owned(&[&b])));
    let c = builder(&server, "hz-version", &errors_c).start().unwrap();
    assert!(
        wait_until(recovery_bound(&config), || all_owned(&[&b, &c])
            && !c.assignment().is_empty()),
        "{:?}",
        manager_report(&[&b, &c])
    );
    let after = b.assignment().version().max(c.assignment().version());
    assert!(
        after > before && after < 1 << 53,
        "versions go on from the real ones: {before} -> {after}"
    );
    b.stop().unwrap();
    c.stop().unwrap();
}
