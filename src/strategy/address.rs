//! Input partitions indexed by the address of their id, so that a previous
//! entry sharing the id allocation is found with one or two lookups: no
//! hash, no read of the id (see `previous.rs`).

use crate::Partition;

/// The address of a partition's id: equal for two partitions exactly when
/// their ids are one allocation. Each id is its own allocation (`Arc<str>`)
/// and every partition compared here is borrowed for the whole call, so one
/// address means one id; empty ids, which need no allocation, are never
/// looked up.
pub(crate) fn address(p: &Partition) -> u64 {
    p.id().as_ptr() as usize as u64
}

/// log2 of the bytes a slot of the direct table covers.
const SLOT_BITS: u32 = 5;
/// Longest bucket the bucketed index accepts: a longer one means the ids are
/// clumped (several distant arenas) and lookups would scan.
const MAX_BUCKET: u32 = 32;

/// Which index [`AddressIndex::new`] may build (all of them in tests).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// The direct table, else the bucketed one.
    Any,
    /// Only the bucketed one.
    #[cfg_attr(not(test), allow(dead_code))]
    Bucketed,
}

pub(crate) enum AddressIndex {
    /// Slot `(a − lo) / 32` holds the low 32 bits of address `a` and the
    /// canonical position + 1. Two addresses less than 32 apart with equal
    /// low 32 bits are equal, so a lookup is exact. Allocators usually give
    /// an `Arc<str>` at least 32 bytes, so ids rarely share a slot. One
    /// random read per lookup: the choice when the ids lie densely (a run
    /// of ids allocated one after the other).
    Direct { lo: u64, slots: Vec<(u32, u32)> },
    /// Buckets of `2^bits` bytes (`bits` ≤ 32, so again equal low 32 bits
    /// within a bucket mean equal addresses), about one bucket per
    /// partition, stored contiguously: `entries[start[b]..start[b + 1]]`.
    /// For ids spread out by other allocations between them (a partition
    /// with labels allocates its constraints too), where the direct table
    /// would be too large.
    Bucketed {
        lo: u64,
        bits: u32,
        start: Vec<u32>,
        entries: Vec<(u32, u32)>,
    },
}

/// The address range of nearly all ids: from a sample, without the lowest
/// and highest 1/64 of it and widened by as much again, so that a few ids
/// allocated far from the others (another arena) do not stretch the
/// buckets over terabytes.
fn bulk(input: &[Partition]) -> Option<(u64, u64)> {
    let step = (input.len() / 1024).max(1);
    let mut sample: Vec<u64> = input.iter().step_by(step).map(address).collect();
    sample.sort_unstable();
    let cut = sample.len() / 64;
    let (&lo, &hi) = (sample.get(cut)?, sample.get(sample.len() - 1 - cut)?);
    let margin = (hi - lo) / 32;
    Some((lo.saturating_sub(margin), hi.saturating_add(margin)))
}

impl AddressIndex {
    /// Indexes `input[j]` under canonical position `at[j]`; `None` when the
    /// ids are too spread or clumped for either index (the caller then
    /// sorts both sides by address).
    pub(crate) fn new(input: &[Partition], at: &[u32], kind: Kind) -> Option<AddressIndex> {
        let (lo, hi) = input
            .iter()
            .map(address)
            .fold((u64::MAX, 0), |(lo, hi), a| (lo.min(a), hi.max(a)));
        let range = hi.checked_sub(lo)?;
        let direct = (kind == Kind::Any)
            .then(|| Self::direct(input, at, lo, range))
            .flatten();
        direct.or_else(|| {
            let (lo, hi) = bulk(input)?;
            Self::bucketed(input, at, lo, hi)
        })
    }

    /// `None` when the ids are spread over more than four slots per
    /// partition (too much memory), or two share a slot.
    fn direct(input: &[Partition], at: &[u32], lo: u64, range: u64) -> Option<AddressIndex> {
        let len = (range >> SLOT_BITS) as usize + 1;
        if len > 4 * input.len() + 1024 {
            return None;
        }
        let mut slots = vec![(0u32, 0u32); len];
        for (p, &c) in input.iter().zip(at) {
            let a = address(p);
            let slot = &mut slots[((a - lo) >> SLOT_BITS) as usize];
            if slot.1 != 0 {
                return None;
            }
            *slot = (a as u32, c + 1);
        }
        Some(AddressIndex::Direct { lo, slots })
    }

    /// The ids in `lo..=hi` in the smallest buckets (at least 32 bytes)
    /// giving at most two per partition; `None` when that needs buckets
    /// above 4 GiB or one holds more than [`MAX_BUCKET`] ids. Ids outside
    /// are not indexed: their previous entries are matched by id.
    fn bucketed(input: &[Partition], at: &[u32], lo: u64, hi: u64) -> Option<AddressIndex> {
        let range = hi - lo;
        let most = 2 * input.len() as u64 + 1024;
        let mut bits = SLOT_BITS;
        while (range >> bits) + 1 > most {
            bits += 1;
        }
        if bits > 32 {
            return None;
        }
        let len = (range >> bits) as usize + 1;
        let bucket = |a: u64| (lo..=hi).contains(&a).then(|| ((a - lo) >> bits) as usize);
        // Counts, then running ends; placing each entry at `--start[b]`
        // leaves `start[b]` at the bucket's first entry.
        let mut start = vec![0u32; len + 1];
        for p in input {
            if let Some(b) = bucket(address(p)) {
                start[b] += 1;
            }
        }
        let mut sum = 0u32;
        for s in &mut start[..len] {
            if *s > MAX_BUCKET {
                return None;
            }
            sum += *s;
            *s = sum;
        }
        start[len] = sum;
        let mut entries = vec![(0u32, 0u32); sum as usize];
        for (p, &c) in input.iter().zip(at) {
            let a = address(p);
            if let Some(b) = bucket(a) {
                start[b] -= 1;
                entries[start[b] as usize] = (a as u32, c);
            }
        }
        Some(AddressIndex::Bucketed {
            lo,
            bits,
            start,
            entries,
        })
    }

    /// Canonical position of the input partition whose id is at `a`.
    pub(crate) fn find(&self, a: u64) -> Option<u32> {
        self.locate(a).and_then(|at| self.find_at(at, a as u32))
    }

    /// Where in the index the id at `a` would be: its slot or bucket, below
    /// [`locations`](Self::locations); `None` when `a` is outside the
    /// indexed range. Nearby locations are nearby in memory, which is what
    /// batched lookups group by.
    pub(crate) fn locate(&self, a: u64) -> Option<u32> {
        let (lo, bits, len) = match self {
            AddressIndex::Direct { lo, slots } => (*lo, SLOT_BITS, slots.len()),
            AddressIndex::Bucketed {
                lo, bits, start, ..
            } => (*lo, *bits, start.len() - 1),
        };
        let at = u32::try_from(a.checked_sub(lo)? >> bits).ok()?;
        ((at as usize) < len).then_some(at)
    }

    /// How many locations there are.
    pub(crate) fn locations(&self) -> usize {
        match self {
            AddressIndex::Direct { slots, .. } => slots.len(),
            AddressIndex::Bucketed { start, .. } => start.len() - 1,
        }
    }

    /// [`find`](Self::find) for an address at location `at` with low 32
    /// bits `low` (which, with the location, fix the address).
    pub(crate) fn find_at(&self, at: u32, low: u32) -> Option<u32> {
        let at = at as usize;
        match self {
            AddressIndex::Direct { slots, .. } => {
                let &(low_here, c) = slots.get(at)?;
                (c != 0 && low_here == low).then(|| c - 1)
            }
            AddressIndex::Bucketed { start, entries, .. } => {
                let (&from, &to) = (start.get(at)?, start.get(at + 1)?);
                entries[from as usize..to as usize]
                    .iter()
                    .find(|e| e.0 == low)
                    .map(|e| e.1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids are found at their position or not at all (a few far from the
    /// others may be left out), ids not indexed never.
    fn finds_exactly(input: &[Partition], index: &AddressIndex) {
        let mut found = 0;
        for (j, p) in input.iter().enumerate() {
            if let Some(c) = index.find(address(p)) {
                assert_eq!(c, j as u32 * 3, "{}", p.id());
                found += 1;
            }
        }
        assert!(
            found * 100 >= input.len() * 95,
            "{found} of {}",
            input.len()
        );
        let others: Vec<Partition> = (0..100).map(|i| Partition::new(format!("o{i}"))).collect();
        for p in &others {
            assert_eq!(index.find(address(p)), None);
        }
    }

    #[test]
    fn both_indexes_find_exactly_the_indexed_ids() {
        // Ids allocated one after the other, and ids with other allocations
        // between them (their labels), which the direct table rejects.
        let dense =
            || -> Vec<Partition> { (0..5000).map(|i| Partition::new(format!("p{i}"))).collect() };
        let spread = || -> Vec<Partition> {
            (0..5000)
                .map(|i| {
                    Partition::new(format!("p{i}"))
                        .require_label("pool", format!("pool-{i}"))
                        .prefer_label("zone", "a")
                })
                .collect()
        };
        for make in [&dense as &dyn Fn() -> Vec<Partition>, &spread] {
            // Other tests allocate on other threads meanwhile, and the
            // allocator may place a run of ids in the holes they leave, far
            // apart (then `new` rightly declines): a fresh allocation gets
            // a few tries, and one of them must give a bucketed index.
            let mut bucketed = 0;
            let mut kept = Vec::new();
            for _ in 0..5 {
                let input = make();
                let at: Vec<u32> = (0..input.len() as u32).map(|j| j * 3).collect();
                if let Some(index @ AddressIndex::Bucketed { .. }) =
                    AddressIndex::new(&input, &at, Kind::Bucketed)
                {
                    finds_exactly(&input, &index);
                    bucketed += 1;
                }
                if let Some(index) = AddressIndex::new(&input, &at, Kind::Any) {
                    finds_exactly(&input, &index);
                }
                if bucketed > 0 {
                    break;
                }
                // Kept, so the next try cannot reuse the same holes.
                kept.push(input);
            }
            assert!(bucketed > 0, "no bucketed index in five allocations");
        }
    }
}
