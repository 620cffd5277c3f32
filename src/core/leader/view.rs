//! What the `assignments` bucket shows, as far as this leader can tell.
//!
//! Readers of the bucket (`parti status`, dashboards, clients in other
//! languages) see one key at a time. The revoke-before-grant rule keeps
//! *owners* exclusive, but a record that lists a partition its worker no
//! longer has (a dead worker's key not yet deleted, a restarted process's
//! old record) would still show it under two workers once the new owner's
//! record lands. So a write that lists a partition another key may still
//! show waits until that key was rewritten or deleted: the publisher orders
//! deletes and revocations first, and this view holds back what would still
//! clash.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Partition ids each worker key may currently show.
#[derive(Debug, Default)]
pub(super) struct ShownView {
    /// Key -> ids it may show. A write or delete whose outcome is unknown
    /// leaves the union of before and after, until a read says which.
    shown: BTreeMap<String, BTreeSet<String>>,
    /// Id -> how many keys may show it: `clashes` costs one lookup per id
    /// instead of one per id and key (a 1,000-worker group writes 1,000
    /// keys per publication).
    count: HashMap<String, usize>,
}

impl ShownView {
    /// Starts from what taking office read.
    pub(crate) fn adopt<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a str, BTreeSet<String>)>,
    ) {
        self.shown = BTreeMap::new();
        self.count = HashMap::new();
        for (k, ids) in records {
            self.set(k, ids);
        }
    }

    /// Whether writing `ids` to `key` would list a partition that another
    /// key may still show.
    pub(crate) fn clashes(&self, key: &str, ids: &BTreeSet<String>) -> bool {
        let mine = self.shown.get(key);
        ids.iter().any(|id| {
            let by_me = usize::from(mine.is_some_and(|m| m.contains(id)));
            self.count.get(id).is_some_and(|n| *n > by_me)
        })
    }

    /// `key` was found (`Some`: holding `ids`) or found absent (`None`).
    pub(crate) fn read(&mut self, key: &str, ids: Option<BTreeSet<String>>) {
        match ids {
            Some(ids) => self.set(key, ids),
            None => self.remove(key),
        }
    }

    /// A write of `ids` to `key`: landed (`true`) or of unknown outcome.
    pub(crate) fn written(&mut self, key: &str, ids: &BTreeSet<String>, landed: bool) {
        if landed {
            self.set(key, ids.clone());
        } else {
            let mut union = self.shown.get(key).cloned().unwrap_or_default();
            union.extend(ids.iter().cloned());
            self.set(key, union);
        }
    }

    /// `key` was deleted.
    pub(crate) fn deleted(&mut self, key: &str) {
        self.remove(key);
    }

    fn set(&mut self, key: &str, ids: BTreeSet<String>) {
        self.remove(key);
        for id in &ids {
            *self.count.entry(id.clone()).or_default() += 1;
        }
        self.shown.insert(key.to_string(), ids);
    }

    fn remove(&mut self, key: &str) {
        let Some(old) = self.shown.remove(key) else {
            return;
        };
        for id in &old {
            if let Some(n) = self.count.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    self.count.remove(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_grant_waits_for_the_key_that_still_shows_the_partition() {
        let mut v = ShownView::default();
        v.adopt([("a", ids(&["1", "2"])), ("b", ids(&["3"]))]);
        assert!(v.clashes("b", &ids(&["3", "2"])), "a still shows 2");
        assert!(!v.clashes("b", &ids(&["3"])), "what b shows itself is fine");
        assert!(!v.clashes("a", &ids(&["1"])), "a revocation never clashes");
        v.written("a", &ids(&["1"]), true);
        assert!(!v.clashes("b", &ids(&["3", "2"])));
    }

    #[test]
    fn an_unknown_outcome_keeps_both_until_read_and_a_delete_frees() {
        let mut v = ShownView::default();
        v.adopt([("a", ids(&["1", "2"]))]);
        v.written("a", &ids(&["1"]), false);
        assert!(
            v.clashes("b", &ids(&["2"])),
            "the write may not have landed"
        );
        v.read("a", Some(ids(&["1"])));
        assert!(!v.clashes("b", &ids(&["2"])));
        v.deleted("a");
        assert!(!v.clashes("b", &ids(&["1"])));
        v.read("a", Some(ids(&["1"])));
        v.read("a", None);
        assert!(!v.clashes("b", &ids(&["1"])), "found absent");
    }
}
