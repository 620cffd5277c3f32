//! Fault injection of the in-process store: partitioned client views, the
//! per-operation hook, and expiry without events.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parti::clock::ManualClock;
use parti::store::memory::{Fault, FaultHook, KvOp, MemoryBackend};
use parti::store::{BucketConfig, KvBackend, KvError, Watch, WatchEvent};

fn drain(watch: &Watch) -> Vec<WatchEvent> {
    watch.events().try_iter().collect()
}

fn put(key: &str, value: &[u8], revision: u64) -> WatchEvent {
    WatchEvent::Put(parti::store::Entry {
        key: key.into(),
        value: value.to_vec(),
        revision,
    })
}

#[test]
fn a_partitioned_client_fails_and_its_watch_catches_up_when_healed() {
    let a = MemoryBackend::default();
    let b = a.client();
    let sa = a.open(&BucketConfig::new("p", None)).expect("open");
    let sb = b.open(&BucketConfig::new("p", None)).expect("open");
    let watch = sb.watch(None).expect("watch");
    assert_eq!(drain(&watch), vec![WatchEvent::Synced]);

    b.set_partitioned(true);
    assert!(b.is_partitioned());
    for result in [
        sb.put("k", b"x").map(|_| ()),
        sb.get("k").map(|_| ()),
        sb.keys().map(|_| ()),
    ] {
        assert!(matches!(result, Err(KvError::Unavailable(_))), "{result:?}");
    }
    assert!(matches!(sb.watch(None), Err(KvError::Unavailable(_))));

    // The other client is unaffected; the partitioned watch hears nothing.
    sa.put("k", b"1").expect("put");
    let r2 = sa.put("k", b"2").expect("put");
    sa.put("gone", b"x").expect("put");
    sa.delete("gone", None).expect("delete");
    // Revisions are bucket-wide: the put of "gone" took r2 + 1.
    let r_del = r2 + 2;
    assert_eq!(drain(&watch), vec![]);

    b.set_partitioned(false);
    // Like a NATS re-watch: the latest record of each key, in revision order.
    assert_eq!(
        drain(&watch),
        vec![
            put("k", b"2", r2),
            WatchEvent::Delete {
                key: "gone".into(),
                revision: r_del
            }
        ]
    );
    let r3 = sa.put("k", b"3").expect("put");
    assert_eq!(drain(&watch), vec![put("k", b"3", r3)]);
    assert_eq!(sb.get("k").expect("get").map(|e| e.revision), Some(r3));
}

#[test]
fn the_fault_hook_fails_before_or_after_applying() {
    let backend = MemoryBackend::default();
    let store = backend.open(&BucketConfig::new("h", None)).expect("open");
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let hook: FaultHook = Arc::new(move |op, bucket, key| {
        seen.fetch_add(1, Ordering::SeqCst);
        assert_eq!(bucket, "h");
        match (op, key) {
            (KvOp::Put, "lost-ack") => Some(Fault::FailAfterApply(KvError::Timeout {
                op: "put",
                after: Duration::from_secs(1),
            })),
            (KvOp::Put, "refused") => Some(Fault::Fail(KvError::Unavailable("injected".into()))),
            _ => None,
        }
    });
    backend.set_fault_hook(Some(hook));

    assert!(matches!(
        store.put("lost-ack", b"v"),
        Err(KvError::Timeout { .. })
    ));
    assert!(
        store.get("lost-ack").expect("get").is_some(),
        "applied despite the error"
    );
    assert!(matches!(
        store.put("refused", b"v"),
        Err(KvError::Unavailable(_))
    ));
    assert_eq!(store.get("refused").expect("get"), None, "not applied");
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    backend.set_fault_hook(None);
    store.put("refused", b"v").expect("put without the hook");
}

#[test]
fn expiry_follows_the_injected_clock_and_sends_no_event() {
    let clock = ManualClock::new();
    let backend = MemoryBackend::new(Arc::new(clock.clone()));
    let store = backend
        .open(&BucketConfig::new("t", Some(Duration::from_secs(5))))
        .expect("open");
    let r = store.put("k", b"v").expect("put");
    let watch = store.watch(None).expect("watch");
    assert_eq!(drain(&watch), vec![put("k", b"v", r), WatchEvent::Synced]);

    clock.advance(Duration::from_millis(4999));
    assert!(store.get("k").expect("get").is_some());
    clock.advance(Duration::from_millis(1));
    assert_eq!(store.get("k").expect("get"), None);
    assert_eq!(drain(&watch), vec![], "expiry makes no watch event");
    // Expired means never written for CAS, like NATS.
    store
        .update("k", b"w", 0)
        .expect("update(…, 0) after expiry");
    let replay = store.watch(None).expect("watch");
    assert_eq!(drain(&replay).len(), 2);
}
