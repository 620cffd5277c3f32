//! An in-process store with the semantics of the NATS one, for unit tests and
//! deterministic simulation.
//!
//! - One revision sequence per bucket; deletes leave markers (so
//!   `update(k, v, 0)` after a delete is a mismatch, and `create` works).
//! - `max_age` is measured on the injected [`Clock`]; expired values and
//!   markers vanish lazily, without a watch event (like NATS).
//! - Watches are fed synchronously at write time: no threads.
//! - Faults: [`MemoryBackend::client`] hands out another view on the same
//!   data; [`MemoryBackend::set_partitioned`] cuts that view off (operations
//!   fail with [`KvError::Unavailable`], its watches pause and catch up when
//!   healed, like a NATS re-watch), and [`MemoryBackend::set_fault_hook`]
//!   injects per-operation failures or latency.
//! - Store faults (what a NATS server that lost state does): roll a bucket
//!   back by its last acknowledged writes, drop a bucket, empty the store
//!   ([`MemoryBackend::rollback`], [`MemoryBackend::drop_bucket`],
//!   [`MemoryBackend::empty`]). Watches of a bucket that forgot end with
//!   [`Watch::store_forgot`] set, and the first operation on a dropped bucket
//!   recreates it and fails with [`KvError::Recreated`], as the NATS store's
//!   repair does.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use parti::clock::ManualClock;
//! use parti::store::{BucketConfig, KvBackend, KvError};
//! use parti::store::memory::MemoryBackend;
//!
//! let clock = ManualClock::new();
//! let backend = MemoryBackend::new(Arc::new(clock.clone()));
//! let store = backend.open(&BucketConfig::new("leases", Some(Duration::from_secs(5))))?;
//! store.create("leader", b"me")?;
//! assert!(matches!(store.create("leader", b"you"), Err(KvError::AlreadyExists(_))));
//! clock.advance(Duration::from_secs(5));
//! store.create("leader", b"you")?; // the first value expired
//! # Ok::<(), KvError>(())
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use super::{
    is_valid_bucket, is_valid_key, BucketConfig, Entry, KvBackend, KvError, KvStore, Revision,
    Watch, WatchEvent,
};
use crate::clock::{Clock, SystemClock};

mod forget;

/// The operations a [`FaultHook`] sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KvOp {
    /// [`KvBackend::open`].
    Open,
    /// [`KvStore::create`].
    Create,
    /// [`KvStore::update`].
    Update,
    /// [`KvStore::put`].
    Put,
    /// [`KvStore::get`].
    Get,
    /// [`KvStore::delete`].
    Delete,
    /// [`KvStore::keys`].
    Keys,
    /// [`KvStore::watch`].
    Watch,
}

/// What a [`FaultHook`] makes of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fail without applying the operation.
    Fail(KvError),
    /// Apply the operation, then report this error anyway (a write whose ack
    /// was lost: "outcome unknown").
    FailAfterApply(KvError),
}

/// Called before every operation of one client view, with the operation,
/// the bucket and the key (empty for bucket-wide operations). Returning
/// `None` lets the operation run normally. A hook may also sleep to add
/// latency.
pub type FaultHook = Arc<dyn Fn(KvOp, &str, &str) -> Option<Fault> + Send + Sync>;

/// One stored record: a value, or a delete marker (`value: None`).
#[derive(Clone, Debug)]
struct Record {
    value: Option<Vec<u8>>,
    revision: Revision,
    written: Instant,
}

struct Watcher {
    id: u64,
    /// `None`: all keys.
    key: Option<String>,
    tx: Sender<WatchEvent>,
    /// Last revision delivered; on heal, everything newer is delivered.
    last: Revision,
    client: Arc<ClientState>,
    /// Set when the watch ends because the store forgot.
    forgot: Arc<AtomicBool>,
}

impl Watcher {
    fn wants(&self, key: &str) -> bool {
        self.key.as_deref().is_none_or(|k| k == key)
    }
}

struct Bucket {
    config: BucketConfig,
    seq: Revision,
    records: BTreeMap<String, Record>,
    watchers: Vec<Watcher>,
    /// The last writes, newest last, each with the record it replaced: what
    /// a rollback undoes.
    history: VecDeque<(String, Option<Record>)>,
}

impl Bucket {
    fn is_live(&self, record: &Record, now: Instant) -> bool {
        self.config
            .max_age
            .is_none_or(|age| now < record.written + age)
    }

    /// The key's last record unless it expired.
    fn last(&self, key: &str, now: Instant) -> Option<&Record> {
        self.records.get(key).filter(|r| self.is_live(r, now))
    }

    fn write(&mut self, key: &str, value: Option<Vec<u8>>, now: Instant) -> Revision {
        self.seq += 1;
        let record = Record {
            value,
            revision: self.seq,
            written: now,
        };
        let event = event_for(key, &record);
        let replaced = self.records.insert(key.to_string(), record);
        if self.history.len() == forget::HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((key.to_string(), replaced));
        let revision = self.seq;
        self.watchers.retain_mut(|w| {
            if !w.wants(key) || w.client.partitioned.load(Ordering::SeqCst) {
                return true;
            }
            w.last = revision;
            w.tx.send(event.clone()).is_ok()
        });
        revision
    }

    /// Sends a watcher every live record it has not seen yet, in revision
    /// order (what a NATS re-watch from `last + 1` delivers).
    fn catch_up(&self, watcher: &mut Watcher, now: Instant) -> bool {
        let mut missed: Vec<(&String, &Record)> = self
            .records
            .iter()
            .filter(|(k, r)| r.revision > watcher.last && watcher.wants(k) && self.is_live(r, now))
            .collect();
        missed.sort_by_key(|(_, r)| r.revision);
        for (key, record) in missed {
            watcher.last = record.revision;
            if watcher.tx.send(event_for(key, record)).is_err() {
                return false;
            }
        }
        true
    }
}

fn event_for(key: &str, record: &Record) -> WatchEvent {
    match &record.value {
        Some(value) => WatchEvent::Put(Entry {
            key: key.to_string(),
            value: value.clone(),
            revision: record.revision,
        }),
        None => WatchEvent::Delete {
            key: key.to_string(),
            revision: record.revision,
        },
    }
}

struct Data {
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, Bucket>>,
    next_watch: Mutex<u64>,
}

#[derive(Default)]
struct ClientState {
    partitioned: AtomicBool,
    hook: Mutex<Option<FaultHook>>,
}

/// In-process buckets; clones and [`client`](Self::client) views share the
/// data.
#[derive(Clone)]
pub struct MemoryBackend {
    data: Arc<Data>,
    client: Arc<ClientState>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field(
                "partitioned",
                &self.client.partitioned.load(Ordering::SeqCst),
            )
            .finish_non_exhaustive()
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::new(Arc::new(SystemClock))
    }
}

impl MemoryBackend {
    /// Empty storage; `max_age` is measured on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryBackend {
            data: Arc::new(Data {
                clock,
                buckets: Mutex::new(HashMap::new()),
                next_watch: Mutex::new(1),
            }),
            client: Arc::new(ClientState::default()),
        }
    }

    /// Another client on the same data, with its own partition state and
    /// fault hook (like a second NATS connection).
    pub fn client(&self) -> MemoryBackend {
        MemoryBackend {
            data: self.data.clone(),
            client: Arc::new(ClientState::default()),
        }
    }

    /// Cuts this client off (`true`): its operations fail with
    /// [`KvError::Unavailable`] and its watches receive nothing. Healing
    /// (`false`) delivers what its watches missed, in revision order.
    pub fn set_partitioned(&self, partitioned: bool) {
        self.client.partitioned.store(partitioned, Ordering::SeqCst);
        if partitioned {
            return;
        }
        let now = self.data.clock.now();
        let mut buckets = self.data.buckets.lock();
        for bucket in buckets.values_mut() {
            let mut watchers = std::mem::take(&mut bucket.watchers);
            watchers
                .retain_mut(|w| !Arc::ptr_eq(&w.client, &self.client) || bucket.catch_up(w, now));
            bucket.watchers = watchers;
        }
    }

    /// Whether this client is cut off.
    pub fn is_partitioned(&self) -> bool {
        self.client.partitioned.load(Ordering::SeqCst)
    }

    /// Installs (or removes, with `None`) this client's fault hook.
    pub fn set_fault_hook(&self, hook: Option<FaultHook>) {
        *self.client.hook.lock() = hook;
    }

    /// Opens a bucket as the concrete store type.
    pub fn open_store(&self, config: &BucketConfig) -> Result<MemoryStore, KvError> {
        let store = MemoryStore {
            bucket: config.name.clone(),
            config: config.clone(),
            data: self.data.clone(),
            client: self.client.clone(),
        };
        if !is_valid_bucket(&config.name) {
            return Err(KvError::Invalid(format!(
                "invalid bucket name {:?}",
                config.name
            )));
        }
        store.run(KvOp::Open, "", |_, _| {
            let mut buckets = self.data.buckets.lock();
            match buckets.get(&config.name) {
                Some(existing) if existing.config != *config => Err(KvError::Invalid(format!(
                    "bucket {} exists with another configuration: {:?}, wanted {:?}",
                    config.name, existing.config, config
                ))),
                Some(_) => Ok(()),
                None => {
                    buckets.insert(config.name.clone(), Bucket::new(config));
                    Ok(())
                }
            }
        })?;
        Ok(store)
    }
}

impl KvBackend for MemoryBackend {
    fn open(&self, config: &BucketConfig) -> Result<Arc<dyn KvStore>, KvError> {
        Ok(Arc::new(self.open_store(config)?))
    }
}

/// One in-process bucket.
pub struct MemoryStore {
    bucket: String,
    /// What a dropped bucket is recreated with.
    config: BucketConfig,
    data: Arc<Data>,
    client: Arc<ClientState>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// Runs `op` under the partition and fault rules of this client.
    fn run<T>(
        &self,
        kind: KvOp,
        key: &str,
        op: impl FnOnce(&Data, Instant) -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        if self.client.partitioned.load(Ordering::SeqCst) {
            return Err(KvError::Unavailable("partitioned (memory store)".into()));
        }
        let hook = self.client.hook.lock().clone();
        let fault = hook.and_then(|h| h(kind, &self.bucket, key));
        match fault {
            Some(Fault::Fail(e)) => Err(e),
            Some(Fault::FailAfterApply(e)) => {
                let _ = op(&self.data, self.data.clock.now());
                Err(e)
            }
            None => op(&self.data, self.data.clock.now()),
        }
    }

    /// Runs `op` on this store's bucket.
    fn with_bucket<T>(
        &self,
        kind: KvOp,
        key: &str,
        op: impl FnOnce(&mut Bucket, Instant) -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        self.run(kind, key, |data, now| {
            let mut buckets = data.buckets.lock();
            let Some(bucket) = buckets.get_mut(&self.bucket) else {
                // As the NATS store's repair does: the first operation that
                // finds the bucket gone creates it again, empty, and fails.
                buckets.insert(self.bucket.clone(), Bucket::new(&self.config));
                return Err(KvError::Recreated(self.bucket.clone()));
            };
            op(bucket, now)
        })
    }
}

fn checked_key(key: &str) -> Result<&str, KvError> {
    if is_valid_key(key) {
        Ok(key)
    } else {
        Err(KvError::Invalid(format!("invalid key {key:?}")))
    }
}

impl KvStore for MemoryStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    fn create(&self, key: &str, value: &[u8]) -> Result<Revision, KvError> {
        let key = checked_key(key)?;
        self.with_bucket(KvOp::Create, key, |b, now| {
            if b.last(key, now).is_some_and(|r| r.value.is_some()) {
                return Err(KvError::AlreadyExists(key.to_string()));
            }
            Ok(b.write(key, Some(value.to_vec()), now))
        })
    }

    fn update(&self, key: &str, value: &[u8], expected: Revision) -> Result<Revision, KvError> {
        let key = checked_key(key)?;
        self.with_bucket(KvOp::Update, key, |b, now| {
            let last = b.last(key, now).map_or(0, |r| r.revision);
            if last != expected {
                return Err(KvError::RevisionMismatch {
                    key: key.to_string(),
                    expected,
                });
            }
            Ok(b.write(key, Some(value.to_vec()), now))
        })
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<Revision, KvError> {
        let key = checked_key(key)?;
        self.with_bucket(KvOp::Put, key, |b, now| {
            Ok(b.write(key, Some(value.to_vec()), now))
        })
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, KvError> {
        let key = checked_key(key)?;
        self.with_bucket(KvOp::Get, key, |b, now| {
            Ok(b.last(key, now).and_then(|r| {
                r.value.as_ref().map(|value| Entry {
                    key: key.to_string(),
                    value: value.clone(),
                    revision: r.revision,
                })
            }))
        })
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(), KvError> {
        let key = checked_key(key)?;
        self.with_bucket(KvOp::Delete, key, |b, now| {
            if let Some(expected) = expected {
                let last = b.last(key, now).map_or(0, |r| r.revision);
                if last != expected {
                    return Err(KvError::RevisionMismatch {
                        key: key.to_string(),
                        expected,
                    });
                }
            }
            b.write(key, None, now);
            Ok(())
        })
    }

    fn keys(&self) -> Result<Vec<String>, KvError> {
        self.with_bucket(KvOp::Keys, "", |b, now| {
            Ok(b.records
                .iter()
                .filter(|(_, r)| r.value.is_some() && b.is_live(r, now))
                .map(|(k, _)| k.clone())
                .collect())
        })
    }

    fn watch(&self, key: Option<&str>) -> Result<Watch, KvError> {
        let key = key.map(checked_key).transpose()?;
        let id = {
            let mut next = self.data.next_watch.lock();
            *next += 1;
            *next
        };
        let forgot = Arc::new(AtomicBool::new(false));
        let rx = self.with_bucket(KvOp::Watch, key.unwrap_or(""), |b, now| {
            let (tx, rx) = crossbeam_channel::unbounded();
            let mut current: Vec<(&String, &Record)> = b
                .records
                .iter()
                .filter(|(k, r)| {
                    r.value.is_some() && b.is_live(r, now) && key.is_none_or(|w| w == *k)
                })
                .collect();
            current.sort_by_key(|(_, r)| r.revision);
            for (k, r) in current {
                // The receiver is alive: we hold it.
                let _ = tx.send(event_for(k, r));
            }
            let _ = tx.send(WatchEvent::Synced);
            b.watchers.push(Watcher {
                id,
                key: key.map(str::to_string),
                tx,
                // Markers and values up to here are covered by the replay.
                last: b.seq,
                client: self.client.clone(),
                forgot: forgot.clone(),
            });
            Ok(rx)
        })?;
        let data: Weak<Data> = Arc::downgrade(&self.data);
        let bucket = self.bucket.clone();
        Ok(Watch::new(rx, move || {
            if let Some(data) = data.upgrade() {
                if let Some(b) = data.buckets.lock().get_mut(&bucket) {
                    b.watchers.retain(|w| w.id != id);
                }
            }
        })
        .with_forgot_flag(forgot))
    }
}
