//! The manager under bad input and bad luck: corrupt values in its buckets,
//! panicking callbacks, a preferred ID, stopping while NATS is down.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use group::{fast_config, partitions, start_manager, wait_until, ChildWorker};
use parti::source::StaticSource;
use parti::{Config, Error, Manager, State};
use support::NatsServer;

fn errors_sink() -> (
    Arc<Mutex<Vec<String>>>,
    impl Fn(&Error) + Send + Sync + 'static,
) {
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = errors.clone();
    (errors, move |e: &Error| {
        sink.lock().unwrap().push(e.to_string())
    })
}

#[test]
fn corrupt_values_are_reported_and_ignored() {
    let server = NatsServer::start();
    let (errors, on_error) = errors_sink();
    let nc = parti::store::nats::connect(&server.url()).unwrap();
    let m = Manager::builder(nc, "corrupt")
        .config(fast_config())
        .partitions(StaticSource::new(partitions(8)))
        .on_error(on_error)
        .start()
        .unwrap();
    let before = m.assignment();
    assert_eq!(before.len(), 8);
    let raw = nats::connect(server.url()).unwrap();
    let put = |subject: &str, body: &[u8]| {
        raw.request_timeout(subject, body, Duration::from_secs(2))
            .expect("kv put");
    };
    // Garbage under this worker's assignment key, under a fake worker's
    // heartbeat key, and under the lease.
    put(
        &format!("$KV.parti-corrupt-assignments.{}", m.worker_id()),
        b"{not json",
    );
    put("$KV.parti-corrupt-workers.worker-99", b"\x00\x01garbage");
    assert!(
        wait_until(Duration::from_secs(5), || errors.lock().unwrap().len() >= 2),
        "reported: {:?}",
        errors.lock().unwrap()
    );
    let reported = errors.lock().unwrap().clone();
    assert!(
        reported
            .iter()
            .any(|e| e.contains("corrupt") && e.contains(m.worker_id())),
        "{reported:?}"
    );
    assert!(
        reported.iter().any(|e| e.contains("worker-99")),
        "{reported:?}"
    );
    // The last good assignment stays, and the manager keeps working.
    assert_eq!(m.assignment(), before);
    std::thread::sleep(fast_config().heartbeat_ttl * 2);
    assert!(m.state().is_assigned(), "{}", m.state());
    assert_eq!(m.assignment().partitions(), before.partitions());
    m.stop().unwrap();
}

#[test]
fn a_panicking_callback_is_reported_and_the_manager_keeps_working() {
    let server = NatsServer::start();
    let (errors, on_error) = errors_sink();
    let seen_state: Arc<OnceLock<Arc<Manager>>> = Arc::default();
    let slot = seen_state.clone();
    let states_from_callback: Arc<Mutex<Vec<State>>> = Arc::default();
    let sink = states_from_callback.clone();
    let nc = parti::store::nats::connect(&server.url()).unwrap();
    let m = Manager::builder(nc, "panics")
        .config(fast_config())
        .partitions(StaticSource::new(partitions(8)))
        .on_assignment_changed(move |c| {
            // Callbacks may call back into the manager: they never run under
            // its locks.
            if let Some(m) = slot.get() {
                sink.lock().unwrap().push(m.state());
                let _ = m.assignment();
            }
            if !c.added().is_empty() {
                panic!("user bug");
            }
        })
        .on_error(on_error)
        .start()
        .unwrap();
    let m = Arc::new(m);
    let _ = seen_state.set(m.clone());
    assert!(wait_until(Duration::from_secs(5), || errors
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.contains("panicked") && e.contains("user bug"))));
    // A second worker joins: the first one's callback runs again (removals)
    // and its heartbeat acknowledges it, so the handoff completes.
    let (other, _) = start_manager(&server.url(), "panics", 8, &fast_config());
    assert!(wait_until(Duration::from_secs(10), || m.assignment().len()
        + other.assignment().len()
        == 8
        && !other.assignment().is_empty()));
    assert!(!states_from_callback.lock().unwrap().is_empty());
    other.stop().unwrap();
    m.stop().unwrap();
}

#[test]
fn stop_returns_within_the_shutdown_timeout_while_nats_is_down() {
    let mut server = NatsServer::start();
    let config = fast_config();
    let (m, _) = start_manager(&server.url(), "down", 8, &config);
    server.kill();
    let t0 = Instant::now();
    let _ = m.stop();
    let took = t0.elapsed();
    assert!(took <= config.shutdown_timeout, "stop took {took:?}");
    assert_eq!(m.state(), State::Shutdown);
    assert!(m.assignment().is_empty(), "partitions released locally");
}

#[test]
fn a_restarted_process_gets_its_preferred_id_back() {
    let server = NatsServer::start();
    let config = fast_config();
    // Graceful stop frees the ID at once.
    let mut first = ChildWorker::spawn(&server.url(), "pref", 8, &config, Some("worker-5"));
    assert_eq!(first.wait_started(Duration::from_secs(20)), "worker-5");
    assert!(first.stop(Duration::from_secs(10)));
    let mut second = ChildWorker::spawn(&server.url(), "pref", 8, &config, Some("worker-5"));
    assert_eq!(second.wait_started(Duration::from_secs(20)), "worker-5");
    // A crash leaves the key behind; the next process takes it over once the
    // dead one's heartbeat stood still for a TTL.
    second.kill();
    let third = ChildWorker::spawn(&server.url(), "pref", 8, &config, Some("worker-5"));
    assert_eq!(third.wait_started(Duration::from_secs(20)), "worker-5");
    // While a live worker holds it, another process gets a different ID.
    let fourth = ChildWorker::spawn(&server.url(), "pref", 8, &config, Some("worker-5"));
    assert_ne!(fourth.wait_started(Duration::from_secs(20)), "worker-5");
}

#[test]
fn spawn_returns_while_a_preferred_id_is_being_taken_over_and_stop_ends_that_claim() {
    let server = NatsServer::start();
    // A long TTL: the takeover of a crashed holder's ID waits for its
    // heartbeat to stand still that long.
    let config = Config {
        heartbeat_interval: Duration::from_millis(500),
        heartbeat_ttl: Duration::from_secs(3),
        worker_id_ttl: Duration::from_secs(6),
        ..fast_config()
    };
    let crashed = |id: &str| {
        let mut child = ChildWorker::spawn(&server.url(), "spawnq", 8, &config, Some(id));
        assert_eq!(child.wait_started(Duration::from_secs(20)), id);
        child.kill();
    };
    let builder = |id: &str| {
        let nc = parti::store::nats::connect(&server.url()).unwrap();
        Manager::builder(nc, "spawnq")
            .config(config.clone())
            .partitions(StaticSource::new(partitions(8)))
            .preferred_id(id)
    };

    crashed("worker-5");
    let m = builder("worker-5").spawn().expect("spawn");
    // Returned before the claim could end: it waits a TTL at least.
    assert_eq!(m.state(), State::ClaimingId);
    assert_eq!(m.worker_id(), "");
    m.wait_for_state(State::Stable, Duration::from_secs(20))
        .expect("stable after the takeover");
    assert_eq!(m.worker_id(), "worker-5");

    crashed("worker-6");
    let waiting = builder("worker-6").spawn().expect("spawn");
    assert_eq!(waiting.state(), State::ClaimingId);
    let t0 = Instant::now();
    waiting.stop().expect("a stop during the claim is clean");
    assert!(
        t0.elapsed() < config.heartbeat_ttl,
        "stop waited for the claim: {:?}",
        t0.elapsed()
    );
    assert_eq!(waiting.state(), State::Shutdown);
    assert_eq!(waiting.worker_id(), "", "the claim was ended, not finished");
    m.stop().unwrap();
}

#[test]
fn a_full_group_fails_start_with_its_error_and_spawn_reports_it() {
    let server = NatsServer::start();
    let config = Config {
        max_workers: 1,
        ..fast_config()
    };
    let (first, _) = start_manager(&server.url(), "full", 4, &config);
    let builder = || {
        let nc = parti::store::nats::connect(&server.url()).unwrap();
        Manager::builder(nc, "full")
            .config(config.clone())
            .partitions(StaticSource::new(partitions(4)))
    };
    match builder().start() {
        Err(Error::NoFreeWorkerId { max_workers: 1 }) => {}
        other => panic!("expected NoFreeWorkerId, got {other:?}"),
    }
    let (errors, on_error) = errors_sink();
    let spawned = builder().on_error(on_error).spawn().expect("spawn");
    spawned
        .wait_for_state(State::Shutdown, Duration::from_secs(10))
        .expect("a failed claim shuts the manager down");
    assert!(
        wait_until(Duration::from_secs(5), || errors
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("no free worker id"))),
        "reported: {:?}",
        errors.lock().unwrap()
    );
    first.stop().unwrap();
}
