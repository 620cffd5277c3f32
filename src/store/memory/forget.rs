//! Store faults of the in-process store: what a NATS server that lost state
//! looks like to its clients. A rollback undoes the last acknowledged writes
//! of a bucket and issues their revisions again (a server restored from an
//! older copy, or one that lost unsynced writes in a crash); a dropped bucket
//! is gone until the next operation recreates it (`nats kv rm`, a server on
//! an empty store directory, whose repair recreates it). Either way every
//! watch of the bucket ends with [`Watch::store_forgot`](crate::store::Watch::store_forgot)
//! set, as the NATS store's watches do when they find the stream recreated or
//! behind them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;

use super::{Bucket, MemoryBackend};
use crate::store::BucketConfig;

/// How many of a bucket's last writes a rollback can undo.
pub(super) const HISTORY: usize = 64;

impl Bucket {
    pub(super) fn new(config: &BucketConfig) -> Bucket {
        Bucket {
            config: config.clone(),
            seq: 0,
            records: BTreeMap::new(),
            watchers: Vec::new(),
            history: VecDeque::new(),
        }
    }

    /// Ends every watch of this bucket, flagged as forgotten.
    fn forget_watches(&mut self) {
        for w in self.watchers.drain(..) {
            w.forgot.store(true, Ordering::SeqCst);
            // Dropping the sender ends the watch's channel.
        }
    }
}

impl MemoryBackend {
    /// Undoes the last `k` writes of `bucket` (at most the last 64): each
    /// key gets back the record it had before, and the revisions of the
    /// undone writes will be issued again. Returns how many writes were
    /// undone (0 for a missing bucket).
    ///
    /// ```
    /// use parti::store::{BucketConfig, KvBackend, KvStore};
    /// use parti::store::memory::MemoryBackend;
    ///
    /// let backend = MemoryBackend::default();
    /// let store = backend.open(&BucketConfig::new("b", None)).unwrap();
    /// store.put("k", b"1").unwrap();
    /// let watch = store.watch(Some("k")).unwrap();
    /// assert_eq!(store.put("k", b"2").unwrap(), 2);
    /// assert_eq!(backend.rollback("b", 1), 1);
    /// assert_eq!(store.get("k").unwrap().unwrap().value, b"1");
    /// assert_eq!(store.put("k", b"3").unwrap(), 2, "revision 2 is issued again");
    /// while watch.events().try_recv().is_ok() {}
    /// assert!(watch.events().recv().is_err() && watch.store_forgot());
    /// ```
    pub fn rollback(&self, bucket: &str, k: usize) -> usize {
        let mut buckets = self.data.buckets.lock();
        let Some(b) = buckets.get_mut(bucket) else {
            return 0;
        };
        let mut undone = 0;
        while undone < k {
            let Some((key, before)) = b.history.pop_back() else {
                break;
            };
            match before {
                Some(record) => b.records.insert(key, record),
                None => b.records.remove(&key),
            };
            b.seq -= 1;
            undone += 1;
        }
        b.forget_watches();
        undone
    }

    /// Drops `bucket` with everything in it; the next operation on it (from
    /// any client) recreates it, empty, with the settings that client opened
    /// it with, and fails with [`KvError::Recreated`](crate::store::KvError::Recreated).
    /// Returns whether it existed.
    ///
    /// ```
    /// use parti::store::{BucketConfig, KvBackend, KvError, KvStore};
    /// use parti::store::memory::MemoryBackend;
    ///
    /// let backend = MemoryBackend::default();
    /// let store = backend.open(&BucketConfig::new("b", None)).unwrap();
    /// store.put("k", b"1").unwrap();
    /// assert!(backend.drop_bucket("b"));
    /// assert!(matches!(store.get("k"), Err(KvError::Recreated(_))));
    /// assert_eq!(store.get("k").unwrap(), None);
    /// assert_eq!(store.put("k", b"2").unwrap(), 1, "revisions start again");
    /// ```
    pub fn drop_bucket(&self, bucket: &str) -> bool {
        let mut buckets = self.data.buckets.lock();
        match buckets.remove(bucket) {
            Some(mut b) => {
                b.forget_watches();
                true
            }
            None => false,
        }
    }

    /// Drops every bucket: a server back on an empty store directory.
    pub fn empty(&self) {
        let mut buckets = self.data.buckets.lock();
        for (_, mut b) in buckets.drain() {
            b.forget_watches();
        }
    }
}
