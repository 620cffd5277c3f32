//! A partition's label constraints, laid out for the placement passes: the
//! encoded key that strategies compare sits inline at the start of the
//! value, so comparing two partitions' constraints reads one place and
//! nothing else (a separately allocated key was one more cache miss per
//! partition: at a million partitions, most of the classification's time).
//! Where partitions keep these values: `interned.rs`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

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
// `key` first: the passes read only it, and it then starts the value (or,
// counted, follows the reference counts on the first cache line).
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
