//! Invariant 5: the published view. An observer watches the `assignments`
//! bucket as any reader of it would (a client of its own, never faulty) and,
//! after every change it sees, checks that no partition is listed in two
//! workers' records at once. A watch that ends (the store forgot) is
//! opened again, and its replay tells the bucket's state from scratch. A
//! value nobody could decode (a third party's garbage) lists nothing.
//!
//! What is promised after the store forgot (docs/operations.md, "When the
//! store forgets"): a record the store rolled back to, replayed when the
//! watch was opened again and not rewritten since (a new leader's re-stamp,
//! the same record under its epoch, is no rewrite), may still list a
//! partition that is now granted elsewhere — the leader rewrites a key only
//! when it next changes it. Such a record is harmless only if nobody will
//! ever act on it: its version is below the one its process holds (workers
//! never apply a lower version), it is addressed to an earlier incarnation
//! of its process (one that fenced itself since: workers apply only records
//! of their current incarnation), or the process it is addressed to is not
//! running. Exactly that is exempt; any other double listing fails.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::names::META_KEY;
use crate::store::{KvStore, Watch, WatchEvent};
use crate::wire::{self, AssignmentRecord};

use super::watches::Ended;

/// One record as the observer last saw it.
struct Shown {
    epoch: u64,
    version: u64,
    instance: String,
    incarnation: u32,
    ids: BTreeSet<String>,
    /// Replayed after the store forgot, not rewritten since.
    stale: bool,
}

/// Whether a record (worker key, process instance, incarnation, version)
/// will never be acted on: the world answers from its processes.
pub(crate) type Harmless<'a> = &'a dyn Fn(&str, &str, u32, u64) -> bool;

/// A reader of the assignments bucket.
pub(crate) struct ViewObserver {
    bucket: String,
    store: Arc<dyn KvStore>,
    watch: Option<Watch>,
    /// The last watch ended because the store forgot.
    forgot: bool,
    /// Replaying a watch opened after the store forgot (until synced).
    replaying: bool,
    records: BTreeMap<String, Shown>,
}

impl ViewObserver {
    pub fn new(store: Arc<dyn KvStore>) -> Self {
        ViewObserver {
            bucket: store.bucket().to_string(),
            watch: store.watch(None).ok(),
            store,
            forgot: false,
            replaying: false,
            records: BTreeMap::new(),
        }
    }

    /// Takes every change seen since the last call, in order; the first
    /// moment a partition shows under two workers (other than through a
    /// harmless stale record) is an error.
    pub fn check(&mut self, harmless: Harmless) -> Result<(), String> {
        if self.watch.is_none() {
            // Opening a dropped bucket recreates it and fails: next step.
            self.watch = self.store.watch(None).ok();
            if self.watch.is_some() {
                self.replaying = self.forgot;
                self.forgot = false;
            }
            self.records.clear();
        }
        let (events, ended) = super::watches::drain(&mut self.watch);
        self.forgot |= ended == Ended::Forgot;
        for ev in events {
            let key = match ev {
                WatchEvent::Put(e) if e.key != META_KEY => {
                    match wire::decode::<AssignmentRecord>(&self.bucket, &e.key, &e.value) {
                        Ok(r) => {
                            let ids: BTreeSet<String> =
                                r.partitions.into_iter().map(|p| p.id).collect();
                            // A new leader's re-stamp of a stale record
                            // (same version, same partitions) is as stale.
                            let restamp = self.records.get(&e.key).is_some_and(|s| {
                                s.stale
                                    && s.version == r.version
                                    && s.instance == r.instance
                                    && s.ids == ids
                            });
                            let shown = Shown {
                                epoch: r.epoch,
                                version: r.version,
                                instance: r.instance,
                                incarnation: r.incarnation,
                                ids,
                                stale: self.replaying || restamp,
                            };
                            self.records.insert(e.key.clone(), shown);
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
                WatchEvent::Synced => {
                    self.replaying = false;
                    continue;
                }
                _ => continue,
            };
            self.clash(&key, harmless)?;
        }
        Ok(())
    }

    /// Whether a partition of `key`'s record is listed in another record
    /// (neither a harmless stale one).
    fn clash(&self, key: &str, harmless: Harmless) -> Result<(), String> {
        let Some(mine) = self.records.get(key) else {
            return Ok(());
        };
        let ignored = |k: &str, s: &Shown| {
            s.stale && harmless(k, s.instance.as_str(), s.incarnation, s.version)
        };
        if ignored(key, mine) {
            return Ok(());
        }
        for (other, theirs) in &self.records {
            if other == key || ignored(other, theirs) {
                continue;
            }
            if let Some(id) = mine.ids.intersection(&theirs.ids).next() {
                return Err(format!(
                    "the assignments bucket lists partition {id} under {key} (epoch {}, \
                     v{}, just written) and {other} (epoch {}, v{}{})",
                    mine.epoch,
                    mine.version,
                    theirs.epoch,
                    theirs.version,
                    if theirs.stale {
                        ", from before the store forgot"
                    } else {
                        ""
                    }
                ));
            }
        }
        Ok(())
    }
}
