//! Where partitions keep their label constraints: the first [`SLOTS`]
//! distinct sets a process builds live in a process-wide table for its
//! lifetime, and a partition names its set by a slot number; later sets are
//! reference counted, shared between partitions built one after another.
//!
//! Why a table: a strategy clones every partition into the placement it
//! returns and the caller later drops it. With the constraints behind an
//! `Arc`, each clone and drop of a labelled partition was a second locked
//! increment and decrement (its id's being the first), about a tenth of a
//! labelled call at 10,000 partitions. A slot number is copied like an
//! integer. A fleet carries a handful of label sets (zones times pools), so
//! the table's bound is far from reached; a workload that labels each
//! partition differently (a tenant per partition) fills it once and then
//! costs what every labelled partition cost before, never more memory than
//! the bound.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::constraints::Constraints;

/// Distinct label sets kept for the process's lifetime. At most about
/// 100 KiB of table, plus the sets' own strings.
const SLOTS: usize = 1024;

/// The process's table.
static TABLE: Table<SLOTS> = Table::new();

/// A set's required and preferred keys, owned.
type SetKey = (Vec<u8>, Vec<u8>);

/// `N` slots of label sets, handed out in order, each only after its set is
/// stored, and never emptied.
struct Table<const N: usize> {
    /// `cells[s - 1]` holds the set of slot `s`.
    cells: [OnceLock<Constraints>; N],
    /// Slot of each stored set, by its required and preferred keys; its
    /// length is the number of slots handed out. Taken only for a set not
    /// stored shortly before on the calling thread.
    index: Mutex<BTreeMap<SetKey, u32>>,
}

impl<const N: usize> Table<N> {
    const fn new() -> Self {
        Table {
            cells: [const { OnceLock::new() }; N],
            index: parking_lot::const_mutex(BTreeMap::new()),
        }
    }

    /// The set in slot `s`; `None` for 0 (or a slot never handed out,
    /// which no partition can hold).
    fn get(&self, s: u32) -> Option<&Constraints> {
        let at = usize::try_from(s).ok()?.checked_sub(1)?;
        self.cells.get(at)?.get()
    }

    /// The slot of a set equal to `c`, a new one while there is room, or
    /// else `c` counted.
    fn intern(&self, c: Constraints) -> Stored {
        let (req, pref) = c.keys();
        let key = (req.to_vec(), pref.to_vec());
        let mut index = self.index.lock();
        if let Some(&s) = index.get(&key) {
            return Stored::Slot(s);
        }
        let next = index.len();
        let Some(cell) = self.cells.get(next) else {
            return Stored::Counted(Arc::new(c));
        };
        // Slots are filled in order under the lock, so this one is empty.
        match cell.set(c) {
            Ok(()) => {
                let s = next as u32 + 1;
                index.insert(key, s);
                Stored::Slot(s)
            }
            Err(c) => Stored::Counted(Arc::new(c)),
        }
    }
}

/// How a partition holds its constraints.
#[derive(Clone, Debug)]
pub(crate) enum Stored {
    /// A slot of the process's table (1-based: 0 means no slot).
    Slot(u32),
    /// Its own reference-counted value, once the table is full.
    Counted(Arc<Constraints>),
}

impl Stored {
    fn get(&self) -> Option<&Constraints> {
        match self {
            Stored::Slot(s) => in_slot(*s),
            Stored::Counted(c) => Some(c),
        }
    }
}

/// The set in slot `s` of the process's table; `None` for 0.
pub(crate) fn in_slot(s: u32) -> Option<&'static Constraints> {
    TABLE.get(s)
}

/// How many distinct sets [`store`] remembers per thread: partitions built
/// alike come one after another, and a hit saves taking the global lock.
const RECENT: usize = 16;

thread_local! {
    /// The sets most recently stored on this thread, newest last.
    static RECENTLY_STORED: RefCell<Vec<Stored>> = const { RefCell::new(Vec::new()) };
}

/// Stores `c`: in the slot of an equal set if there is one, else in a new
/// slot while the table has room, else reference counted (shared with an
/// equal set stored shortly before on this thread).
pub(crate) fn store(c: Constraints) -> Stored {
    if let Some(known) = recall(&c) {
        return known;
    }
    let stored = TABLE.intern(c);
    // `try_with`: a partition built while the thread is torn down is stored
    // all the same, only not remembered.
    let _ = RECENTLY_STORED.try_with(|recent| {
        let mut recent = recent.borrow_mut();
        if recent.len() == RECENT {
            recent.remove(0);
        }
        recent.push(stored.clone());
    });
    stored
}

/// A set equal to `c` stored shortly before on this thread.
fn recall(c: &Constraints) -> Option<Stored> {
    RECENTLY_STORED
        .try_with(|recent| {
            let recent = recent.borrow();
            let equal = |s: &&Stored| s.get().is_some_and(|k| k.keys() == c.keys());
            recent.iter().rev().find(equal).cloned()
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::strategy::worker::labels as map;

    fn zone(z: &str) -> Constraints {
        Constraints::new(map(&[]), map(&[("zone", z)]))
    }

    fn slot(s: &Stored) -> u32 {
        match s {
            Stored::Slot(s) => *s,
            Stored::Counted(_) => panic!("not in a slot: {s:?}"),
        }
    }

    #[test]
    fn a_table_gives_equal_sets_one_slot_then_counts_what_does_not_fit() {
        let table: Table<2> = Table::new();
        let a = slot(&table.intern(zone("a")));
        let b = slot(&table.intern(zone("b")));
        assert_ne!(a, b);
        assert_eq!(slot(&table.intern(zone("a"))), a);
        assert_eq!(
            table.get(a).map(|c| c.preferred.clone()),
            Some(map(&[("zone", "a")]))
        );
        assert_eq!(
            table.get(b).map(|c| c.preferred.clone()),
            Some(map(&[("zone", "b")]))
        );
        assert!(table.get(0).is_none() && table.get(3).is_none());
        // Full: a new set is counted, a stored one keeps its slot.
        match table.intern(zone("c")) {
            Stored::Counted(c) => assert_eq!(c.preferred, map(&[("zone", "c")])),
            s => panic!("a full table stored {s:?}"),
        }
        assert_eq!(slot(&table.intern(zone("b"))), b);
    }

    /// Both hold one value: the same slot, or the same allocation.
    fn same(a: &Stored, b: &Stored) -> bool {
        match (a, b) {
            (Stored::Slot(x), Stored::Slot(y)) => x == y,
            (Stored::Counted(x), Stored::Counted(y)) => Arc::ptr_eq(x, y),
            _ => false,
        }
    }

    #[test]
    fn equal_sets_stored_in_turn_share_one_value() {
        // Slots or not (other tests of this process may have filled the
        // table), equal sets stored one after another share one value.
        let zones = ["a", "b", "c"];
        let stored: Vec<Stored> = (0..60).map(|i| store(zone(zones[i % 3]))).collect();
        for (i, s) in stored.iter().enumerate() {
            assert!(same(s, &stored[i % 3]), "{i}");
            assert!(!same(s, &stored[(i + 1) % 3]), "{i}");
            let c = s.get().expect("a stored set can be read back");
            assert_eq!(c.preferred, map(&[("zone", zones[i % 3])]));
        }
        if let Stored::Slot(b) = stored[1] {
            let there = std::thread::spawn(|| store(zone("b")))
                .join()
                .expect("the thread stores without panicking");
            assert_eq!(slot(&there), b, "one slot per set, whatever the thread");
        }
    }
}
