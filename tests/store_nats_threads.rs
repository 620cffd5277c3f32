//! Dropping watches, stores and backends leaves no thread behind. A test
//! binary of its own: other tests running in parallel would change the
//! process's thread count.

mod support;

use std::time::Duration;

use parti::store::nats::{connect, NatsBackend};
use parti::store::{BucketConfig, KvBackend, WatchEvent};
use support::{thread_count, wait_until, NatsServer};

#[test]
fn dropping_watches_and_backends_leaves_no_thread() {
    let server = NatsServer::start();
    let conn = connect(&server.url()).expect("connect");
    let baseline = thread_count();

    for _ in 0..2 {
        let backend = NatsBackend::new(conn.clone(), Duration::from_secs(2));
        let store = backend
            .open(&BucketConfig::new("threads", None))
            .expect("open");
        let watches: Vec<_> = (0..3).map(|_| store.watch(None).expect("watch")).collect();
        let rev = store.put("k", b"v").expect("put");
        for w in &watches {
            let seen = std::iter::from_fn(|| w.events().recv_timeout(Duration::from_secs(5)).ok())
                .any(|e| matches!(e, WatchEvent::Put(e) if e.revision == rev));
            assert!(seen, "the watch did not deliver the put");
        }
        // Flusher + one watch hub, however many watches.
        assert_eq!(thread_count(), baseline + 2);

        drop(watches);
        drop(store);
        drop(backend);
        assert!(
            wait_until(Duration::from_secs(10), || thread_count() == baseline),
            "threads left: {} (baseline {baseline})",
            thread_count()
        );
    }
}
