//! One conformance suite, run against both stores so they cannot drift.
//! Each case is a generic function over a [`Fixture`]; the `conformance!`
//! macro instantiates every case for one backend.

mod support;

use std::sync::Arc;
use std::time::Duration;

use parti::clock::ManualClock;
use parti::store::memory::MemoryBackend;
use parti::store::nats::{connect, NatsBackend};
use parti::store::{BucketConfig, KvBackend, KvError, KvStore, Watch, WatchEvent};
use support::{wait_until, NatsServer};

/// One backend under test, with two independent clients ("connections").
trait Fixture {
    fn new() -> Self;
    /// The first client.
    fn a(&self) -> &dyn KvBackend;
    /// A second, independent client on the same data.
    fn b(&self) -> &dyn KvBackend;
    /// A bucket TTL short enough to wait for.
    fn ttl(&self) -> Duration;
    /// Lets `ttl` pass (a no-op where time is real).
    fn let_pass(&self, ttl: Duration);
    /// How long to wait for an expiry to show (0: it must already show).
    fn expiry_wait(&self) -> Duration;
}

struct Memory {
    clock: ManualClock,
    a: MemoryBackend,
    b: MemoryBackend,
}

impl Fixture for Memory {
    fn new() -> Self {
        let clock = ManualClock::new();
        let a = MemoryBackend::new(Arc::new(clock.clone()));
        let b = a.client();
        Memory { clock, a, b }
    }
    fn a(&self) -> &dyn KvBackend {
        &self.a
    }
    fn b(&self) -> &dyn KvBackend {
        &self.b
    }
    fn ttl(&self) -> Duration {
        Duration::from_secs(10)
    }
    fn let_pass(&self, ttl: Duration) {
        self.clock.advance(ttl);
    }
    fn expiry_wait(&self) -> Duration {
        Duration::ZERO
    }
}

struct Nats {
    a: NatsBackend,
    b: NatsBackend,
    // Dropped last: the backends' connections go first.
    _server: NatsServer,
}

impl Fixture for Nats {
    fn new() -> Self {
        let server = NatsServer::start();
        let backend = || {
            NatsBackend::new(
                connect(&server.url()).expect("connect"),
                Duration::from_secs(2),
            )
        };
        Nats {
            a: backend(),
            b: backend(),
            _server: server,
        }
    }
    fn a(&self) -> &dyn KvBackend {
        &self.a
    }
    fn b(&self) -> &dyn KvBackend {
        &self.b
    }
    fn ttl(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn let_pass(&self, _ttl: Duration) {}
    fn expiry_wait(&self) -> Duration {
        // NATS sweeps max_age on its own schedule (~1.75 × TTL measured).
        Duration::from_secs(10)
    }
}

fn open(backend: &dyn KvBackend, name: &str) -> Arc<dyn KvStore> {
    backend
        .open(&BucketConfig::new(name, None))
        .expect("open bucket")
}

fn next(watch: &Watch) -> WatchEvent {
    watch
        .events()
        .recv_timeout(Duration::from_secs(10))
        .expect("a watch event within 10 s")
}

fn put_event(key: &str, value: &[u8], revision: u64) -> WatchEvent {
    WatchEvent::Put(parti::store::Entry {
        key: key.into(),
        value: value.to_vec(),
        revision,
    })
}

fn create_conflict<F: Fixture>() {
    let fx = F::new();
    let s = open(fx.a(), "b1");
    let rev = s.create("k", b"one").expect("first create");
    assert!(rev > 0);
    assert_eq!(
        s.create("k", b"two"),
        Err(KvError::AlreadyExists("k".into()))
    );
    let other = open(fx.b(), "b1");
    assert!(other.create("k", b"three").unwrap_err().is_conflict());
    let got = s.get("k").expect("get").expect("present");
    assert_eq!((got.value.as_slice(), got.revision), (&b"one"[..], rev));
}

fn stale_cas<F: Fixture>() {
    let fx = F::new();
    let s = open(fx.a(), "b1");
    let r1 = s.put("k", b"v1").expect("put");
    let r2 = s.update("k", b"v2", r1).expect("fresh CAS");
    assert!(r2 > r1);
    assert_eq!(
        s.update("k", b"v3", r1),
        Err(KvError::RevisionMismatch {
            key: "k".into(),
            expected: r1
        })
    );
    assert_eq!(s.get("k").expect("get").expect("present").value, b"v2");
}

fn update_zero_on_absent<F: Fixture>() {
    let fx = F::new();
    let s = open(fx.a(), "b1");
    let r = s
        .update("fresh", b"v", 0)
        .expect("update(…, 0) on absent key");
    assert_eq!(s.get("fresh").expect("get").map(|e| e.revision), Some(r));
    assert!(matches!(
        s.update("fresh", b"w", 0),
        Err(KvError::RevisionMismatch { expected: 0, .. })
    ));
}

fn delete_then_create<F: Fixture>() {
    let fx = F::new();
    let s = open(fx.a(), "b1");
    let r1 = s.create("k", b"one").expect("create");
    s.delete("k", None).expect("delete");
    assert_eq!(s.get("k").expect("get"), None);
    // A deleted key keeps a marker: only create() treats it as absent.
    assert!(s.update("k", b"x", 0).unwrap_err().is_conflict());
    let r2 = s.create("k", b"two").expect("create after delete");
    assert!(r2 > r1);
    assert_eq!(s.get("k").expect("get").expect("present").value, b"two");
    // Deleting an absent key is not an error.
    s.delete("never-written", None).expect("delete absent key");
}

fn conditional_delete<F: Fixture>() {
    let fx = F::new();
    let s = open(fx.a(), "b1");
    let r1 = s.put("k", b"v").expect("put");
    assert_eq!(
        s.delete("k", Some(r1 + 100)),
        Err(KvError::RevisionMismatch {
            key: "k".into(),
            expected: r1 + 100
        })
    );
    assert!(s.get("k").expect("get").is_some());
    s.delete("k", Some(r1))
        .expect("delete at the right revision");
    assert_eq!(s.get("k").expect("get"), None);
}

fn revisions_increase_bucket_wide<F: Fixture>() {
    let fx = F::new();
    let s = open(fx.a(), "b1");
    let a = s.put("a", b"1").expect("put");
    let b = s.put("b", b"1").expect("put");
    let c = s.put("a", b"2").expect("put");
    assert!(a < b && b < c, "{a} {b} {c}");
}

fn ttl_expiry<F: Fixture>() {
    let fx = F::new();
    let ttl = fx.ttl();
    let s = fx
        .a()
        .open(&BucketConfig::new("ttl", Some(ttl)))
        .expect("open");
    s.put("k", b"v").expect("put");
    assert!(s.get("k").expect("get").is_some());
    fx.let_pass(ttl);
    assert!(
        wait_until(fx.expiry_wait(), || matches!(s.get("k"), Ok(None))),
        "key did not expire"
    );
    assert_eq!(s.keys().expect("keys"), Vec::<String>::new());
    // An expired key is absent for create and for update(…, 0).
    s.create("k", b"again").expect("create after expiry");
}

fn keys_lists_live_keys<F: Fixture>() {
    let fx = F::new();
    let s = open(fx.a(), "b1");
    assert_eq!(s.keys().expect("keys"), Vec::<String>::new());
    for k in ["a", "b", "c/d", "e.f"] {
        s.put(k, b"v").expect("put");
    }
    s.delete("b", None).expect("delete");
    let mut keys = s.keys().expect("keys");
    keys.sort();
    assert_eq!(keys, vec!["a", "c/d", "e.f"]);
}

fn watch_replays_then_sees_other_client<F: Fixture>() {
    let fx = F::new();
    let s = open(fx.a(), "b1");
    let ra = s.put("a", b"1").expect("put");
    s.put("gone", b"x").expect("put");
    s.delete("gone", None).expect("delete");
    let rc = s.put("c", b"3").expect("put");

    let watch = s.watch(None).expect("watch");
    assert_eq!(next(&watch), put_event("a", b"1", ra));
    assert_eq!(next(&watch), put_event("c", b"3", rc));
    assert_eq!(next(&watch), WatchEvent::Synced);

    let other = open(fx.b(), "b1");
    let rd = other.put("d", b"4").expect("put from the other client");
    assert_eq!(next(&watch), put_event("d", b"4", rd));
    other
        .delete("a", None)
        .expect("delete from the other client");
    match next(&watch) {
        WatchEvent::Delete { key, revision } => {
            assert_eq!(key, "a");
            assert!(revision > rd);
        }
        e => panic!("expected the delete of a, got {e:?}"),
    }
}

fn watch_empty_bucket_syncs_at_once<F: Fixture>() {
    let fx = F::new();
    let s = open(fx.a(), "b1");
    let watch = s.watch(None).expect("watch");
    assert_eq!(next(&watch), WatchEvent::Synced);
    let r = open(fx.b(), "b1").create("k", b"v").expect("create");
    assert_eq!(next(&watch), put_event("k", b"v", r));
}

fn watch_one_key<F: Fixture>() {
    let fx = F::new();
    let s = open(fx.a(), "b1");
    s.put("other", b"x").expect("put");
    let r1 = s.put("mine", b"1").expect("put");
    let watch = s.watch(Some("mine")).expect("watch");
    assert_eq!(next(&watch), put_event("mine", b"1", r1));
    assert_eq!(next(&watch), WatchEvent::Synced);
    s.put("other", b"y").expect("put");
    let r2 = open(fx.b(), "b1").put("mine", b"2").expect("put");
    assert_eq!(next(&watch), put_event("mine", b"2", r2));
}

fn invalid_names<F: Fixture>() {
    let fx = F::new();
    let s = open(fx.a(), "b1");
    for bad in ["", "has space", ".lead", "trail.", "star*", "gt>"] {
        assert!(
            matches!(s.put(bad, b"v"), Err(KvError::Invalid(_))),
            "put {bad:?}"
        );
        assert!(
            matches!(s.create(bad, b"v"), Err(KvError::Invalid(_))),
            "create {bad:?}"
        );
        assert!(
            matches!(s.get(bad), Err(KvError::Invalid(_))),
            "get {bad:?}"
        );
        assert!(
            matches!(s.delete(bad, None), Err(KvError::Invalid(_))),
            "delete {bad:?}"
        );
    }
    assert!(matches!(s.watch(Some("a b")), Err(KvError::Invalid(_))));
    for bad in ["", "dot.ted", "sp ace"] {
        assert!(
            matches!(
                fx.a().open(&BucketConfig::new(bad, None)),
                Err(KvError::Invalid(_))
            ),
            "bucket {bad:?}"
        );
    }
}

fn config_mismatch_is_invalid<F: Fixture>() {
    let fx = F::new();
    let ten = BucketConfig::new("cfg", Some(Duration::from_secs(10)));
    fx.a().open(&ten).expect("create");
    fx.b().open(&ten).expect("same config again is fine");
    let twenty = BucketConfig::new("cfg", Some(Duration::from_secs(20)));
    match fx.b().open(&twenty) {
        Err(KvError::Invalid(msg)) => assert!(msg.contains("max_age"), "{msg}"),
        Err(other) => panic!("expected Invalid naming max_age, got {other:?}"),
        Ok(_) => panic!("a different max_age was accepted"),
    }
}

macro_rules! conformance {
    ($backend:ident, $fixture:ty) => {
        mod $backend {
            use super::*;
            #[test]
            fn create_conflict() {
                super::create_conflict::<$fixture>()
            }
            #[test]
            fn stale_cas() {
                super::stale_cas::<$fixture>()
            }
            #[test]
            fn update_zero_on_absent() {
                super::update_zero_on_absent::<$fixture>()
            }
            #[test]
            fn delete_then_create() {
                super::delete_then_create::<$fixture>()
            }
            #[test]
            fn conditional_delete() {
                super::conditional_delete::<$fixture>()
            }
            #[test]
            fn revisions_increase_bucket_wide() {
                super::revisions_increase_bucket_wide::<$fixture>()
            }
            #[test]
            fn ttl_expiry() {
                super::ttl_expiry::<$fixture>()
            }
            #[test]
            fn keys_lists_live_keys() {
                super::keys_lists_live_keys::<$fixture>()
            }
            #[test]
            fn watch_replays_then_sees_other_client() {
                super::watch_replays_then_sees_other_client::<$fixture>()
            }
            #[test]
            fn watch_empty_bucket_syncs_at_once() {
                super::watch_empty_bucket_syncs_at_once::<$fixture>()
            }
            #[test]
            fn watch_one_key() {
                super::watch_one_key::<$fixture>()
            }
            #[test]
            fn invalid_names() {
                super::invalid_names::<$fixture>()
            }
            #[test]
            fn config_mismatch_is_invalid() {
                super::config_mismatch_is_invalid::<$fixture>()
            }
        }
    };
}

conformance!(memory, Memory);
conformance!(nats, Nats);
