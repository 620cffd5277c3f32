//! Partitions kept in a NATS KV bucket and watched for changes.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{after, bounded, select_biased, Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::PartitionSource;
use crate::names::validate_group;
use crate::store::{is_valid_key, BucketConfig, KvBackend, KvStore, WatchEvent};
use crate::{Error, Partition};

/// How long the watcher waits before opening its watch again after a failure.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// The value stored under a partition's key. An empty value means weight 1.
#[derive(Serialize, Deserialize)]
struct PartitionValue {
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

/// Partitions stored in a KV bucket (by default `parti-<group>-partitions`):
/// one key per partition id, whose value is empty or `{"weight": n}`.
///
/// Adding or removing a partition (with [`add`](KvSource::add) /
/// [`remove`](KvSource::remove), the `parti partitions` command, or any KV
/// client) makes the leader rebalance by itself: the source watches its
/// bucket and tells the leader through [`PartitionSource::changes`].
/// Values that do not decode are skipped and reported through `on_error`.
///
/// Cloning is cheap; clones share the bucket. Keep one clone to edit the
/// list while the manager owns another.
///
/// ```
/// use std::sync::Arc;
/// use parti::source::{KvSource, PartitionSource};
/// use parti::store::memory::MemoryBackend;
/// use parti::Partition;
///
/// let backend = MemoryBackend::default();
/// let source = KvSource::open(&backend, "orders")?;
/// source.add(&Partition::new("orders-0"))?;
/// source.add(&Partition::with_weight("orders-1", 3))?;
/// source.remove("orders-0")?;
/// assert_eq!(source.list()?, vec![Partition::with_weight("orders-1", 3)]);
/// # Ok::<(), parti::Error>(())
/// ```
#[derive(Clone)]
pub struct KvSource {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KvStore>,
    /// A backend this source opened itself, closed when the last clone goes.
    owned: Option<Arc<dyn KvBackend>>,
    /// Dropping these ends the watcher threads.
    stops: Mutex<Vec<Sender<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stops.get_mut().clear();
        if let Some(backend) = &self.owned {
            backend.close();
        }
    }
}

impl std::fmt::Debug for KvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvSource")
            .field("bucket", &self.inner.store.bucket())
            .finish_non_exhaustive()
    }
}

impl KvSource {
    /// The bucket of `group`'s partitions: `parti-<group>-partitions`.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for an unusable group name.
    pub fn bucket_name(group: &str) -> Result<String, Error> {
        validate_group(group)?;
        Ok(format!("parti-{group}-partitions"))
    }

    /// Opens (creating if needed) `group`'s partitions bucket with one
    /// replica. Use [`open_bucket`](KvSource::open_bucket) for replicated
    /// buckets.
    ///
    /// # Errors
    /// [`Error::InvalidName`], or [`Error::Kv`] when the bucket cannot be
    /// opened.
    pub fn open(backend: &dyn KvBackend, group: &str) -> Result<Self, Error> {
        Self::open_bucket(backend, &BucketConfig::new(Self::bucket_name(group)?, None))
    }

    /// Opens (creating if needed) the bucket described by `config`.
    ///
    /// # Errors
    /// [`Error::Kv`] when the bucket cannot be opened.
    pub fn open_bucket(backend: &dyn KvBackend, config: &BucketConfig) -> Result<Self, Error> {
        Ok(Self::new(backend.open(config)?))
    }

    /// Opens `group`'s partitions bucket over a connection of its own
    /// (made with [`store::nats::connect`](crate::store::nats::connect)),
    /// closed when the last clone of this source is dropped.
    ///
    /// # Errors
    /// As [`open`](KvSource::open).
    #[allow(deprecated)] // the blocking `nats` client marks every item deprecated
    pub fn connect(
        conn: nats::Connection,
        group: &str,
        op_timeout: Duration,
    ) -> Result<Self, Error> {
        let backend = crate::store::nats::NatsBackend::new(conn, op_timeout);
        let config = BucketConfig::new(Self::bucket_name(group)?, None);
        let store = match backend.open(&config) {
            Ok(store) => store,
            Err(e) => {
                backend.close();
                return Err(e.into());
            }
        };
        Ok(Self::build(store, Some(Arc::new(backend))))
    }

    /// A source over an already opened bucket.
    pub fn new(store: Arc<dyn KvStore>) -> Self {
        Self::build(store, None)
    }

    fn build(store: Arc<dyn KvStore>, owned: Option<Arc<dyn KvBackend>>) -> Self {
        KvSource {
            inner: Arc::new(Inner {
                store,
                owned,
                stops: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        self.inner.store.bucket()
    }

    /// Adds a partition, or changes its weight.
    ///
    /// # Errors
    /// [`Error::InvalidPartition`] for an id that is not a valid KV key
    /// (`[-/_=.a-zA-Z0-9]`) or a zero weight; [`Error::Kv`] when the write
    /// fails.
    pub fn add(&self, partition: &Partition) -> Result<(), Error> {
        check_id(partition.id())?;
        if partition.weight() == 0 {
            return Err(Error::InvalidPartition {
                id: partition.id().to_string(),
                reason: "weight must be at least 1".into(),
            });
        }
        let value = serde_json::to_vec(&PartitionValue {
            weight: partition.weight(),
        })
        .unwrap_or_default();
        self.inner.store.put(partition.id(), &value)?;
        Ok(())
    }

    /// Removes a partition (removing an absent one is not an error).
    ///
    /// # Errors
    /// [`Error::InvalidPartition`] for an invalid id; [`Error::Kv`] when the
    /// delete fails.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        check_id(id)?;
        self.inner.store.delete(id, None)?;
        Ok(())
    }

    /// The partitions in the bucket, sorted by id. Corrupt values are logged
    /// and skipped.
    ///
    /// # Errors
    /// [`Error::Kv`] when the bucket cannot be read.
    pub fn list(&self) -> Result<Vec<Partition>, Error> {
        self.partitions_reporting(&mut |e| log::warn!("{e}"))
    }
}

fn check_id(id: &str) -> Result<(), Error> {
    if is_valid_key(id) {
        Ok(())
    } else {
        Err(Error::InvalidPartition {
            id: id.to_string(),
            reason: "a partition id in a KV source must match [-/_=.a-zA-Z0-9]+".into(),
        })
    }
}

/// A stored value as a partition; `Err` names why it is unusable.
fn decode(id: &str, value: &[u8]) -> Result<Partition, String> {
    if value.iter().all(u8::is_ascii_whitespace) {
        return Ok(Partition::new(id));
    }
    let v: PartitionValue = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    if v.weight == 0 {
        return Err("weight must be at least 1".into());
    }
    Ok(Partition::with_weight(id, v.weight))
}

impl PartitionSource for KvSource {
    fn partitions(&self) -> Result<Vec<Partition>, Error> {
        self.list()
    }

    fn partitions_reporting(
        &self,
        skipped: &mut dyn FnMut(Error),
    ) -> Result<Vec<Partition>, Error> {
        let store = &self.inner.store;
        let mut keys = store.keys()?;
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // Removed between the listing and this read: simply gone.
            let Some(entry) = store.get(&key)? else {
                continue;
            };
            match decode(&key, &entry.value) {
                Ok(p) => out.push(p),
                Err(reason) => skipped(Error::Corrupt {
                    bucket: store.bucket().to_string(),
                    key,
                    reason,
                }),
            }
        }
        Ok(out)
    }

    fn changes(&self) -> Option<Receiver<()>> {
        let (tx, rx) = bounded(1);
        let (stop_tx, stop_rx) = bounded(0);
        let store = self.inner.store.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("parti-source-{}", store.bucket()))
            .spawn(move || forward_changes(store.as_ref(), &tx, &stop_rx));
        match spawned {
            Ok(_) => {
                self.inner.stops.lock().push(stop_tx);
                Some(rx)
            }
            Err(e) => {
                log::warn!(
                    "cannot watch the partitions bucket: {e}; changes need refresh_partitions"
                );
                None
            }
        }
    }
}

/// Turns the bucket's watch events into coalesced notifications until the
/// source or the receiver is dropped. Reopens the watch if the store gives up
/// on it (or cannot open it while NATS is down).
fn forward_changes(store: &dyn KvStore, tx: &Sender<()>, stop: &Receiver<()>) {
    loop {
        let watch = match store.watch(None) {
            Ok(w) => w,
            Err(e) => {
                log::debug!("watching {}: {e}", store.bucket());
                select_biased! {
                    recv(stop) -> _ => return,
                    recv(after(REOPEN_AFTER)) -> _ => continue,
                }
            }
        };
        let mut synced = false;
        loop {
            select_biased! {
                recv(stop) -> _ => return,
                recv(watch.events()) -> ev => {
                    let notify = match ev {
                        // Whatever changed while nobody watched is caught up
                        // by one re-read.
                        Ok(WatchEvent::Synced) => { synced = true; true }
                        Ok(_) => synced,
                        Err(_) => break,
                    };
                    if notify {
                        if let Err(TrySendError::Disconnected(_)) = tx.try_send(()) {
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryBackend;

    #[test]
    fn values_decode_or_are_skipped() {
        assert_eq!(decode("a", b""), Ok(Partition::new("a")));
        assert_eq!(
            decode("a", br#"{"weight":4}"#),
            Ok(Partition::with_weight("a", 4))
        );
        assert_eq!(decode("a", b"{}"), Ok(Partition::new("a")));
        assert!(decode("a", br#"{"weight":0}"#).is_err());
        assert!(decode("a", b"nope").is_err());
    }

    #[test]
    fn corrupt_entries_are_reported_and_skipped() {
        let backend = MemoryBackend::default();
        let source = KvSource::open(&backend, "g").unwrap();
        source.add(&Partition::new("good")).unwrap();
        source.inner.store.put("bad", b"{oops").unwrap();
        let mut skipped = Vec::new();
        let got = source
            .partitions_reporting(&mut |e| skipped.push(e))
            .unwrap();
        assert_eq!(got, vec![Partition::new("good")]);
        assert!(matches!(&skipped[..], [Error::Corrupt { key, .. }] if key == "bad"));
    }

    #[test]
    fn changes_fire_on_add_and_remove() {
        let backend = MemoryBackend::default();
        let source = KvSource::open(&backend, "g").unwrap();
        let rx = source.changes().unwrap();
        // The first notification follows the initial replay.
        rx.recv_timeout(Duration::from_secs(2)).unwrap();
        source.add(&Partition::new("p1")).unwrap();
        rx.recv_timeout(Duration::from_secs(2)).unwrap();
        source.remove("p1").unwrap();
        rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert!(source.add(&Partition::new("bad id")).is_err());
    }
}
