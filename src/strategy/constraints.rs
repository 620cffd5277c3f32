//! A partition's label constraints, laid out for the placement passes: the
//! encoded key that strategies compare sits inline, right after the
//! reference counts of its `Arc`, so comparing two partitions' constraints
//! reads their `Arc` allocations and nothing else (a separately allocated
//! key was one more cache miss per partition: at a million partitions,
//! most of the classification's time).

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Longest encoded key stored inline: one or two short labels (a pool and a
/// zone take 44 bytes). Chosen so that [`LabelKey`] is 48 bytes.
const INLINE: usize = 45;

/// Both maps encoded as length-prefixed bytes, required ones first (up to
/// `split`): one contiguous slice compares far faster than two maps of
/// strings.
#[derive(Clone)]
enum LabelKey {
    Inline {
        len: u8,
        split: u8,
        bytes: [u8; INLINE],
    },
    Boxed {
        split: usize,
        bytes: Box<[u8]>,
    },
}

/// Label constraints of a partition; one value per key. Equality, order and
/// hash are those of the two maps (the key is a function of them).
#[derive(Clone, Default)]
// `key` first: the passes read only it, and it then shares the first cache
// line (or the next) with the reference counts that cloning touches anyway.
#[repr(C)]
pub(crate) struct Constraints {
    key: LabelKey,
    pub(crate) required: BTreeMap<String, String>,
    pub(crate) preferred: BTreeMap<String, String>,
}

impl Default for LabelKey {
    fn default() -> Self {
        LabelKey::Inline {
            len: 0,
            split: 0,
            bytes: [0; INLINE],
        }
    }
}

impl Constraints {
    pub(crate) fn new(
        required: BTreeMap<String, String>,
        preferred: BTreeMap<String, String>,
    ) -> Self {
        let mut c = Constraints {
            required,
            preferred,
            ..Default::default()
        };
        c.encode();
        c
    }

    /// Recomputes the key; called after every change of the maps. The
    /// inline case allocates nothing.
    pub(crate) fn encode(&mut self) {
        let size = |map: &BTreeMap<String, String>| -> usize {
            map.iter().map(|(k, v)| 16 + k.len() + v.len()).sum()
        };
        let split = size(&self.required);
        let len = split + size(&self.preferred);
        let fill = |out: &mut [u8]| {
            let mut at = 0;
            for map in [&self.required, &self.preferred] {
                for (k, v) in map {
                    for s in [k, v] {
                        out[at..at + 8].copy_from_slice(&(s.len() as u64).to_le_bytes());
                        out[at + 8..at + 8 + s.len()].copy_from_slice(s.as_bytes());
                        at += 8 + s.len();
                    }
                }
            }
        };
        self.key = if len <= INLINE {
            let mut bytes = [0; INLINE];
            fill(&mut bytes[..len]);
            LabelKey::Inline {
                len: len as u8,
                split: split as u8,
                bytes,
            }
        } else {
            let mut bytes = vec![0; len].into_boxed_slice();
            fill(&mut bytes);
            LabelKey::Boxed { split, bytes }
        };
    }

    /// The required and the preferred labels as comparable byte strings
    /// (equal exactly when the maps are equal).
    pub(crate) fn keys(&self) -> (&[u8], &[u8]) {
        match &self.key {
            LabelKey::Inline { len, split, bytes } => {
                bytes[..usize::from(*len)].split_at(usize::from(*split))
            }
            LabelKey::Boxed { split, bytes } => bytes.split_at(*split),
        }
    }
}

/// How many distinct constraints [`shared`] remembers per thread: a fleet's
/// partitions carry a handful of label sets (zones times pools), built one
/// after another.
const RECENT: usize = 16;

thread_local! {
    /// The constraints most recently built on this thread, newest last.
    static RECENTLY_BUILT: RefCell<Vec<Arc<Constraints>>> = const { RefCell::new(Vec::new()) };
}

/// `c`, or an equal `Arc` built shortly before on this thread. Partitions
/// with the same labels then share one allocation: a million partitions in
/// three zones hold six constraints instead of 600,000, and a strategy
/// cloning them into its placement bumps a reference count that stays in
/// the cache instead of missing it once per partition (at 1,000,000
/// partitions that was about a quarter of the labelled call). Sharing is
/// invisible otherwise: equality is by value, and changing a shared value
/// copies it first (`Arc::make_mut`).
pub(crate) fn shared(c: Arc<Constraints>) -> Arc<Constraints> {
    recall(&c).unwrap_or_else(|| remember(c))
}

/// [`shared`] for a value not allocated yet (one read from the store): it
/// is allocated only when no equal one was built shortly before.
pub(crate) fn shared_value(c: Constraints) -> Arc<Constraints> {
    recall(&c).unwrap_or_else(|| remember(Arc::new(c)))
}

/// An `Arc` equal to `c` built shortly before on this thread. `try_with`:
/// a partition built while the thread is being torn down keeps its own.
fn recall(c: &Constraints) -> Option<Arc<Constraints>> {
    RECENTLY_BUILT
        .try_with(|recent| {
            let recent = recent.borrow();
            recent.iter().rev().find(|k| k.keys() == c.keys()).cloned()
        })
        .ok()
        .flatten()
}

/// Notes `c` as the newest built on this thread, forgetting the oldest.
fn remember(c: Arc<Constraints>) -> Arc<Constraints> {
    let _ = RECENTLY_BUILT.try_with(|recent| {
        let mut recent = recent.borrow_mut();
        if recent.len() == RECENT {
            recent.remove(0);
        }
        recent.push(Arc::clone(&c));
    });
    c
}

impl PartialEq for Constraints {
    fn eq(&self, other: &Self) -> bool {
        self.required == other.required && self.preferred == other.preferred
    }
}

impl Eq for Constraints {}

impl PartialOrd for Constraints {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Constraints {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.required, &self.preferred).cmp(&(&other.required, &other.preferred))
    }
}

impl Hash for Constraints {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.required.hash(state);
        self.preferred.hash(state);
    }
}

impl fmt::Debug for Constraints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Constraints")
            .field("required", &self.required)
            .field("preferred", &self.preferred)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::strategy::worker::labels as map;

    #[test]
    fn equal_constraints_built_in_turn_share_one_allocation() {
        let zones = ["a", "b", "c"];
        let built: Vec<Arc<Constraints>> = (0..60)
            .map(|i| {
                let c = Constraints::new(map(&[]), map(&[("zone", zones[i % 3])]));
                shared(Arc::new(c))
            })
            .collect();
        for (i, c) in built.iter().enumerate() {
            assert_eq!(c.preferred, map(&[("zone", zones[i % 3])]));
            assert!(Arc::ptr_eq(c, &built[i % 3]), "{i}");
            assert!(!Arc::ptr_eq(c, &built[(i + 1) % 3]), "{i}");
        }
        // More distinct values than remembered: each still gets its own
        // value, and sharing resumes for the recent ones.
        let many: Vec<Arc<Constraints>> = (0..2 * RECENT)
            .map(|i| {
                shared(Arc::new(Constraints::new(
                    map(&[]),
                    map(&[("k", &i.to_string())]),
                )))
            })
            .collect();
        for (i, c) in many.iter().enumerate() {
            assert_eq!(c.preferred, map(&[("k", &i.to_string())]));
        }
        let again = shared(Arc::new(Constraints::new(
            map(&[]),
            map(&[("k", &(2 * RECENT - 1).to_string())]),
        )));
        assert!(Arc::ptr_eq(&again, &many[2 * RECENT - 1]));
    }

    #[test]
    fn keys_are_equal_exactly_when_the_maps_are_inline_or_not() {
        let long = "x".repeat(40);
        let cases = [
            (map(&[]), map(&[("zone", "a")])),
            (map(&[("pool", "vip")]), map(&[("zone", "a")])),
            (map(&[("pool", "vip")]), map(&[])),
            (
                map(&[("pool", "vip"), ("zone", "a")]),
                map(&[("zone", "b")]),
            ),
            (map(&[("k", long.as_str())]), map(&[("zone", "a")])),
            (map(&[]), map(&[("k", long.as_str())])),
        ];
        assert_eq!(std::mem::size_of::<LabelKey>(), 48);
        for (i, (ri, pi)) in cases.iter().enumerate() {
            let a = Constraints::new(ri.clone(), pi.clone());
            let (req, pref) = a.keys();
            assert_eq!(req.is_empty(), ri.is_empty());
            assert_eq!(pref.is_empty(), pi.is_empty());
            for (j, (rj, pj)) in cases.iter().enumerate() {
                let b = Constraints::new(rj.clone(), pj.clone());
                assert_eq!(a.keys() == b.keys(), i == j, "{i} {j}");
                assert_eq!(a == b, i == j);
                assert_eq!(a.cmp(&b), (ri, pi).cmp(&(rj, pj)));
            }
        }
    }
}
