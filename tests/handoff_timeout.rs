//! A release callback stuck past `handoff_timeout`: the leader reports it,
//! and the stuck worker's partitions are granted elsewhere only once its
//! heartbeat lease has expired, not before and not never.

mod group;
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use group::{fast_config, partitions, wait_until};
use parti::source::StaticSource;
use parti::{Config, Error, Manager};
use support::NatsServer;

const N: usize = 12;

type Log = Arc<Mutex<Vec<(Instant, Vec<String>, Vec<String>)>>>;

fn start(
    url: &str,
    config: &Config,
    release: Duration,
    errors: Option<Arc<Mutex<Vec<String>>>>,
) -> (Manager, Log) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let nc = parti::store::nats::connect(url).expect("connect");
    let mut b = Manager::builder(nc, "stuck")
        .config(config.clone())
        .partitions(StaticSource::new(partitions(N)))
        .on_assignment_changed(move |c| {
            let ids =
                |ps: &[parti::Partition]| ps.iter().map(|p| p.id().to_string()).collect::<Vec<_>>();
            sink.lock()
                .unwrap()
                .push((Instant::now(), ids(c.added()), ids(c.removed())));
            if !c.removed().is_empty() {
                std::thread::sleep(release);
            }
        });
    if let Some(errors) = errors {
        b = b.on_error(move |e: &Error| {
            if matches!(e, Error::HandoffTimeout { .. }) {
                errors.lock().unwrap().push(e.to_string());
            }
        });
    }
    (b.start().expect("start"), log)
}

#[test]
fn a_stuck_release_is_reported_and_granted_only_after_the_lease_expires() {
    let server = NatsServer::start();
    let config = Config {
        handoff_timeout: Duration::from_millis(1000),
        ..fast_config()
    };
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let (leader, _) = start(&server.url(), &config, Duration::ZERO, Some(errors.clone()));
    let (stuck, stuck_log) = start(&server.url(), &config, Duration::from_secs(4), None);
    assert!(wait_until(Duration::from_secs(10), || leader
        .assignment()
        .len()
        + stuck.assignment().len()
        == N
        && !stuck.assignment().is_empty()));
    assert!(leader.is_leader());
    // A third worker joins: both others must give some partitions up; the
    // stuck one's release callback blocks for 4 s.
    let (third, third_log) = start(&server.url(), &config, Duration::ZERO, None);
    assert!(
        wait_until(Duration::from_secs(10), || errors
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains(stuck.worker_id()))),
        "the leader reports the slow release"
    );
    let revoked_at = stuck_log
        .lock()
        .unwrap()
        .iter()
        .find(|(_, _, removed)| !removed.is_empty())
        .map(|(t, _, removed)| (*t, removed.clone()))
        .expect("the stuck worker was asked to release");
    let (t_revoke, released) = revoked_at;
    // The third worker eventually gets what the stuck one was asked to give
    // up, but only after the stuck worker's lease expired.
    let granted_at = || {
        third_log
            .lock()
            .unwrap()
            .iter()
            .find(|(_, added, _)| added.iter().any(|p| released.contains(p)))
            .map(|(t, _, _)| *t)
    };
    assert!(
        wait_until(Duration::from_secs(15), || granted_at().is_some()),
        "granted eventually"
    );
    let waited = granted_at().unwrap() - t_revoke;
    let earliest = config.handoff_timeout + config.heartbeat_ttl - config.heartbeat_interval;
    eprintln!("granted {waited:?} after the release began (earliest allowed {earliest:?})");
    assert!(
        waited >= earliest,
        "granted after {waited:?}, before the stuck worker's lease could expire"
    );
    assert!(
        waited < Duration::from_secs(4),
        "did not wait for the stuck callback itself"
    );
    for m in [&third, &stuck, &leader] {
        let _ = m.stop();
    }
}
