//! Invariant 5: the published view. An observer watches the `assignments`
//! bucket as any reader of it would (a client of its own, never faulty) and,
//! after every change it sees, checks that no partition is listed in two
//! workers' records at once. A watch that ends (the store forgot) is
//! opened again, and its replay tells the bucket's state from scratch. A
//! value nobody could decode (a third party's garbage) lists nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::names::META_KEY;
use crate::store::{KvStore, Watch, WatchEvent};
use crate::wire::{self, AssignmentRecord};

/// A reader of the assignments bucket.
pub(crate) struct ViewObserver {
    bucket: String,
    store: Arc<dyn KvStore>,
    watch: Option<Watch>,
    /// Key -> (epoch, version, partition ids) of its record.
    records: BTreeMap<String, (u64, u64, BTreeSet<String>)>,
}

impl ViewObserver {
    pub fn new(store: Arc<dyn KvStore>) -> Self {
        ViewObserver {
            bucket: store.bucket().to_string(),
            watch: store.watch(None).ok(),
            store,
            records: BTreeMap::new(),
        }
    }

    /// Takes every change seen since the last call, in order; the first
    /// moment a partition shows under two workers is an error.
    pub fn check(&mut self) -> Result<(), String> {
        if self.watch.is_none() {
            // Opening a dropped bucket recreates it and fails: next step.
            self.watch = self.store.watch(None).ok();
            self.records.clear();
        }
        let (events, _) = super::watches::drain(&mut self.watch);
        for ev in events {
            let key = match ev {
                WatchEvent::Put(e) if e.key != META_KEY => {
                    match wire::decode::<AssignmentRecord>(&self.bucket, &e.key, &e.value) {
                        Ok(r) => {
                            let ids = r.partitions.into_iter().map(|p| p.id).collect();
                            self.records
                                .insert(e.key.clone(), (r.epoch, r.version, ids));
                        }
                        Err(_) => {
                            self.records.remove(&e.key);
                        }
                    }
                    e.key
                }
                WatchEvent::Delete { key, .. } => {
                    self.records.remove(&key);
                    continue;
                }
                _ => continue,
            };
            self.clash(&key)?;
        }
        Ok(())
    }

    /// Whether a partition of `key`'s record is listed in another record.
    fn clash(&self, key: &str) -> Result<(), String> {
        let Some((epoch, version, mine)) = self.records.get(key) else {
            return Ok(());
        };
        for (other, (e, v, theirs)) in &self.records {
            if other == key {
                continue;
            }
            if let Some(id) = mine.intersection(theirs).next() {
                return Err(format!(
                    "the assignments bucket lists partition {id} under {key} (epoch {epoch}, \
                     v{version}, just written) and {other} (epoch {e}, v{v})"
                ));
            }
        }
        Ok(())
    }
}
