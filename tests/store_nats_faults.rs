//! The NATS store under faults: server outages, kill -9 and restart, frozen
//! servers, client-side network cuts, and a bucket opened with another
//! configuration.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parti::store::nats::{connect, NatsBackend};
use parti::store::{BucketConfig, KvBackend, KvError, KvStore, Watch, WatchEvent};
use support::{wait_until, NatsCluster, NatsServer, TcpProxy};

const OP_TIMEOUT: Duration = Duration::from_millis(1000);
/// Scheduling slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(500);

fn store(url: &str, bucket: &str) -> Arc<dyn KvStore> {
    let _ = env_logger::builder().is_test(true).try_init();
    let backend = NatsBackend::new(connect(url).expect("connect"), OP_TIMEOUT);
    backend
        .open(&BucketConfig::new(bucket, None))
        .expect("open bucket")
}

/// Runs `op`, asserting it returns a transient error within the deadline.
fn assert_fails_in_time<T: std::fmt::Debug>(name: &str, op: impl FnOnce() -> Result<T, KvError>) {
    let started = Instant::now();
    let result = op();
    let took = started.elapsed();
    assert!(
        took <= OP_TIMEOUT + SLACK,
        "{name} took {took:?} (deadline {OP_TIMEOUT:?})"
    );
    match result {
        Err(e) => assert!(
            e.is_transient(),
            "{name}: {e:?} should be Timeout or Unavailable"
        ),
        Ok(v) => panic!("{name} succeeded during the outage: {v:?}"),
    }
}

#[test]
fn every_operation_returns_within_its_deadline_while_the_server_is_down() {
    let mut server = NatsServer::start();
    let s = store(&server.url(), "outage");
    let rev = s.put("k", b"v").expect("put while up");
    server.kill();
    // Right after the kill the client may still believe it is connected
    // (Timeout) or already know better (Unavailable): both are in time.
    for round in 0..2 {
        assert_fails_in_time("put", || s.put("k", b"w"));
        assert_fails_in_time("create", || s.create("new", b"w"));
        assert_fails_in_time("update", || s.update("k", b"w", rev));
        assert_fails_in_time("delete", || s.delete("k", None));
        assert_fails_in_time("get", || s.get("k"));
        assert_fails_in_time("keys", || s.keys());
        assert_fails_in_time("watch", || s.watch(None));
        if round == 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_frozen_server_makes_writes_time_out_not_hang() {
    let server = NatsServer::start();
    let s = store(&server.url(), "frozen");
    s.put("k", b"v").expect("put while up");
    server.freeze();
    let started = Instant::now();
    let result = s.put("k", b"w");
    let took = started.elapsed();
    server.thaw();
    assert!(
        matches!(result, Err(KvError::Timeout { op: "put", .. })),
        "{result:?}"
    );
    assert!(took <= OP_TIMEOUT + SLACK, "took {took:?}");
    // Outcome unknown: after the thaw the write may or may not be there,
    // but the store answers again.
    assert!(wait_until(Duration::from_secs(10), || s.get("k").is_ok()));
}

#[test]
fn the_same_store_works_again_after_kill_9_and_restart() {
    let mut server = NatsServer::start();
    let s = store(&server.url(), "restart");
    let r1 = s.put("k", b"before").expect("put");
    server.kill();
    assert!(s.get("k").is_err());
    server.restart();
    assert!(
        wait_until(Duration::from_secs(20), || s.get("k").is_ok()),
        "store did not recover after the restart"
    );
    let got = s
        .get("k")
        .expect("get")
        .expect("value survived the restart");
    assert_eq!((got.value.as_slice(), got.revision), (&b"before"[..], r1));
    let r2 = s.update("k", b"after", r1).expect("CAS after restart");
    assert!(r2 > r1);
    assert_eq!(s.keys().expect("keys"), vec!["k"]);
}

/// Collects watch events until `want` keys have their expected last value.
fn wait_for_values(watch: &Watch, want: &BTreeMap<String, Vec<u8>>, within: Duration) -> Vec<u64> {
    let deadline = Instant::now() + within;
    let mut seen: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut revisions = Vec::new();
    while seen != *want {
        let left = deadline.saturating_duration_since(Instant::now());
        match watch.events().recv_timeout(left) {
            Ok(WatchEvent::Put(e)) => {
                revisions.push(e.revision);
                seen.insert(e.key, e.value);
            }
            Ok(other) => panic!("unexpected event {other:?}"),
            Err(_) => panic!("watch delivered {seen:?}, wanted {want:?}"),
        }
    }
    revisions
}

fn values(pairs: &[(&str, &[u8; 1])]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
}

fn assert_strictly_increasing(revisions: &[u64]) {
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "duplicates or reordering: {revisions:?}"
    );
}

#[test]
fn a_watcher_keeps_delivering_after_a_server_restart() {
    let mut server = NatsServer::start();
    let watcher = store(&server.url(), "w");
    let watch = watcher.watch(None).expect("watch");
    assert_eq!(
        watch.events().recv_timeout(Duration::from_secs(5)),
        Ok(WatchEvent::Synced)
    );
    let writer = store(&server.url(), "w");
    writer.put("before", b"1").expect("put");

    server.kill();
    // Down longer than the stall threshold, so the watch must re-watch.
    std::thread::sleep(Duration::from_secs(4));
    server.restart();

    assert!(
        wait_until(Duration::from_secs(20), || writer
            .put("after", b"2")
            .is_ok()),
        "writer did not recover"
    );
    writer.put("later", b"3").expect("put");
    let want = values(&[("before", b"1"), ("after", b"2"), ("later", b"3")]);
    let revisions = wait_for_values(&watch, &want, Duration::from_secs(30));
    assert_strictly_increasing(&revisions);
}

#[test]
fn a_watcher_keeps_delivering_after_a_12s_client_side_cut() {
    let server = NatsServer::start();
    let proxy = TcpProxy::start(server.addr());
    let watcher = store(&proxy.url(), "cut");
    let writer = store(&server.url(), "cut");
    writer.put("a", b"1").expect("put");
    let watch = watcher.watch(None).expect("watch");
    let first = watch.events().recv_timeout(Duration::from_secs(5));
    assert!(matches!(first, Ok(WatchEvent::Put(_))), "{first:?}");
    assert_eq!(
        watch.events().recv_timeout(Duration::from_secs(5)),
        Ok(WatchEvent::Synced)
    );

    proxy.cut();
    writer
        .put("during", b"2")
        .expect("put while the watcher is cut off");
    // The scenario itself: the server drops the watcher's consumer after
    // ~5 s without interest; the crate's own watcher never recovers.
    std::thread::sleep(Duration::from_secs(12));
    writer.put("a", b"3").expect("put");
    proxy.restore();
    writer.put("after", b"4").expect("put");

    let want = values(&[("a", b"3"), ("during", b"2"), ("after", b"4")]);
    let revisions = wait_for_values(&watch, &want, Duration::from_secs(30));
    assert_strictly_increasing(&revisions);
    // Still live afterwards.
    let r = writer.put("last", b"5").expect("put");
    match watch.events().recv_timeout(Duration::from_secs(10)) {
        Ok(WatchEvent::Put(e)) => assert_eq!((e.key.as_str(), e.revision), ("last", r)),
        other => panic!("expected the last put, got {other:?}"),
    }
}

#[test]
fn opening_a_bucket_with_another_config_names_the_difference() {
    let server = NatsServer::start();
    let backend = NatsBackend::new(connect(&server.url()).expect("connect"), OP_TIMEOUT);
    backend
        .open(&BucketConfig::new("cfg", Some(Duration::from_secs(30))))
        .expect("create");
    let err = backend
        .open(&BucketConfig::new("cfg", None))
        .err()
        .expect("a mismatch");
    match err {
        KvError::Invalid(msg) => {
            assert!(msg.contains("max_age") && msg.contains("30s"), "{msg}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn a_replicated_bucket_keeps_working_when_a_cluster_node_dies() {
    let mut cluster = NatsCluster::start(3);
    let backend = NatsBackend::new(connect(&cluster.urls()).expect("connect"), OP_TIMEOUT);
    let mut config = BucketConfig::new("r3", None);
    config.replicas = 3;
    // Right after start-up the cluster may still be placing its meta leader.
    let mut opened = None;
    assert!(wait_until(Duration::from_secs(20), || {
        opened = backend.open(&config).ok();
        opened.is_some()
    }));
    let s = opened.expect("opened");
    let watch = s.watch(None).expect("watch");
    assert_eq!(
        watch.events().recv_timeout(Duration::from_secs(5)),
        Ok(WatchEvent::Synced)
    );
    let r1 = s.put("k", b"1").expect("put");

    cluster.kill(0);
    let mut r2 = 0;
    assert!(
        wait_until(Duration::from_secs(30), || match s.update("k", b"2", r1) {
            Ok(r) => {
                r2 = r;
                true
            }
            // An unknown outcome may have been applied: then k is at a newer revision.
            Err(_) => match s.get("k") {
                Ok(Some(e)) if e.revision > r1 => {
                    r2 = e.revision;
                    true
                }
                _ => false,
            },
        }),
        "no write succeeded with one node down"
    );
    assert_eq!(s.get("k").expect("get").map(|e| e.revision), Some(r2));
    let want = values(&[("k", b"2")]);
    let revisions = wait_for_values(&watch, &want, Duration::from_secs(30));
    assert_strictly_increasing(&revisions);
    assert_eq!(s.create("k", b"x"), Err(KvError::AlreadyExists("k".into())));
}

#[test]
fn a_large_replay_arrives_complete_in_order_then_synced() {
    // Enough bytes for the server to ask for flow control during the replay.
    const KEYS: usize = 3000;
    let server = NatsServer::start();
    let writer = store(&server.url(), "big");
    let value = vec![b'x'; 1024];
    for i in 0..KEYS {
        writer.put(&format!("k{i}"), &value).expect("put");
    }
    let watch = store(&server.url(), "big").watch(None).expect("watch");
    let mut revisions = Vec::new();
    loop {
        match watch.events().recv_timeout(Duration::from_secs(10)) {
            Ok(WatchEvent::Put(e)) => revisions.push(e.revision),
            Ok(WatchEvent::Synced) => break,
            other => panic!("unexpected {other:?} after {} puts", revisions.len()),
        }
    }
    assert_eq!(revisions.len(), KEYS);
    assert_strictly_increasing(&revisions);
}

#[test]
fn closing_the_connection_ends_watches() {
    let server = NatsServer::start();
    let conn = connect(&server.url()).expect("connect");
    let backend = NatsBackend::new(conn.clone(), OP_TIMEOUT);
    let s = backend
        .open(&BucketConfig::new("closed", None))
        .expect("open");
    let watch = s.watch(None).expect("watch");
    assert_eq!(
        watch.events().recv_timeout(Duration::from_secs(5)),
        Ok(WatchEvent::Synced)
    );
    conn.close();
    let ended = wait_until(Duration::from_secs(10), || {
        matches!(
            watch.events().try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    });
    assert!(ended, "the watch channel stayed open after close()");
    assert!(matches!(s.put("k", b"v"), Err(KvError::Unavailable(_))));
}
