//! Finding each partition's owner in the previous placement.
//!
//! The leader passes back the placement a strategy returned, whose
//! partitions are clones of the ones it passes in: their ids share one
//! allocation. So most previous entries are matched by the address of their
//! id, which needs neither a read of the id nor a hash of it: an index by
//! address (`address.rs`) when the ids lie close together (allocated in a
//! row from one allocator arena, possibly among other allocations), a join
//! of both sides sorted by address otherwise; with hundreds of thousands of
//! entries the index is read in batches, so that its lookups stay in the
//! cache. The rest (a placement read back from the store, ids built anew)
//! are matched by hash and id.

use super::address::{address, AddressIndex, Kind};
use super::common::{key_hash, Keyed, NO_OWNER};
use super::radix::{sort_by_u64, sort_by_u64_in};
use crate::{Partition, Placement};

/// `owner[i]` for `parts[i]` (canonical order): the first live worker (in id
/// order) that lists it in `previous`, or `NO_OWNER`. Dead workers and
/// unknown partitions are ignored.
pub(crate) fn previous_owners(
    workers: &[&str],
    input: &[Partition],
    parts: &[Keyed],
    previous: &Placement,
) -> Vec<u32> {
    owners_by(workers, input, parts, previous, Some(Kind::Any), BATCH_FROM)
}

/// [`previous_owners`] with the given index (looked up in batches from
/// `batch_from` entries on); without one, by the sorted join.
fn owners_by(
    workers: &[&str],
    input: &[Partition],
    parts: &[Keyed],
    previous: &Placement,
    index: Option<Kind>,
    batch_from: usize,
) -> Vec<u32> {
    let mut owner = vec![NO_OWNER; parts.len()];
    let mut lists: Vec<(u32, &[Partition])> = Vec::new();
    for (worker, list) in previous {
        if let Ok(w) = workers.binary_search(&worker.as_str()) {
            lists.push((w as u32, list));
        }
    }
    let total: usize = lists.iter().map(|(_, l)| l.len()).sum();
    if total == 0 || parts.is_empty() {
        return owner;
    }
    // Canonical position of each input partition.
    let mut at = vec![0u32; input.len()];
    for (c, k) in parts.iter().enumerate() {
        at[k.index as usize] = c as u32;
    }
    let unmatched = match index.and_then(|kind| AddressIndex::new(input, &at, kind)) {
        Some(index) => {
            drop(at);
            let batched = (total >= batch_from)
                .then(|| in_batches(&index, &lists, total, &mut owner))
                .flatten();
            batched.unwrap_or_else(|| one_by_one(&index, &lists, &mut owner))
        }
        None => by_sorted_address(&lists, input, at, total, &mut owner),
    };
    if !unmatched.is_empty() {
        by_id(&lists, input, parts, unmatched, &mut owner);
    }
    owner
}

/// Looks every live entry up in `index`, in list order; returns the
/// positions (among the live entries) of those it does not hold.
fn one_by_one(index: &AddressIndex, lists: &[(u32, &[Partition])], owner: &mut [u32]) -> Vec<u32> {
    let mut unmatched = Vec::new();
    for (w, seq, p) in live_entries(lists) {
        match index.find(address(p)) {
            Some(c) => claim(&mut owner[c as usize], w),
            None => unmatched.push(seq),
        }
    }
    unmatched
}

/// The entries of `lists` that have an id, in order, each with its worker
/// and its position among them (by which the matches name the entries they
/// leave for the match by id).
fn live_entries<'a>(
    lists: &'a [(u32, &'a [Partition])],
) -> impl Iterator<Item = (u32, u32, &'a Partition)> + 'a {
    lists
        .iter()
        .flat_map(|&(w, list)| {
            list.iter()
                .filter(|p| !p.id().is_empty())
                .map(move |p| (w, p))
        })
        .zip(0u32..)
        .map(|((w, p), seq)| (w, seq, p))
}

/// From this many previous entries on, [`in_batches`] looks them up: below
/// it the index and the owners stay in the cache anyway.
const BATCH_FROM: usize = 1 << 18;
/// log2 of the index locations one batch covers: 2^14 locations of 4 to 8
/// bytes stay in the second-level cache and the TLB's reach.
const BATCH_BITS: u32 = 14;

/// [`one_by_one`] in batches: the entries grouped by the part of the index
/// they read, each group looked up while its part is in the cache, then the
/// owners written in a pass of their own. With a million entries the index
/// (about 12 MB) and the owners (4 MB) are far larger than the second-level
/// cache, and looking entries up in list order pays two cache and TLB
/// misses each. (Grouping the owner writes as well measured no faster: the
/// owners fit the third-level cache, and their writes need not wait on the
/// lookups.)
///
/// `None`, with `owner` untouched, when an entry inside the indexed range is
/// not in the index (a placement read back from the store, its ids
/// allocated anew among the input's): the caller then goes one by one,
/// which notes each such entry for the match by id.
fn in_batches(
    index: &AddressIndex,
    lists: &[(u32, &[Partition])],
    total: usize,
    owner: &mut [u32],
) -> Option<Vec<u32>> {
    // (location, low address bits, worker), 12 bytes an entry, in batches
    // sized for evenly spread entries with a quarter more for slack.
    let batches = (index.locations() >> BATCH_BITS) + 1;
    let room = total / batches * 5 / 4 + 16;
    let mut by_location: Vec<Vec<(u32, u32, u32)>> =
        (0..batches).map(|_| Vec::with_capacity(room)).collect();
    let mut unmatched = Vec::new();
    for (w, seq, p) in live_entries(lists) {
        let a = address(p);
        match index.locate(a) {
            Some(at) => by_location[(at >> BATCH_BITS) as usize].push((at, a as u32, w)),
            // Outside the indexed range: an id the index left out.
            None => unmatched.push(seq),
        }
    }
    let mut found = Vec::with_capacity(total);
    for (at, low, w) in by_location.into_iter().flatten() {
        found.push((index.find_at(at, low)?, w));
    }
    for (c, w) in found {
        claim(&mut owner[c as usize], w);
    }
    Some(unmatched)
}

/// The same match as [`AddressIndex`] by sorting both sides by address and
/// merging; returns the positions (among the live entries) of the entries
/// no input partition shares an id allocation with.
fn by_sorted_address(
    lists: &[(u32, &[Partition])],
    input: &[Partition],
    at: Vec<u32>,
    total: usize,
    owner: &mut [u32],
) -> Vec<u32> {
    // (address, worker, position among the live entries); workers come in
    // id order.
    let mut held: Vec<(u64, u32, u32)> = Vec::with_capacity(total);
    held.extend(live_entries(lists).map(|(w, seq, p)| (address(p), w, seq)));
    let mut mine: Vec<(u64, u32, u32)> = input
        .iter()
        .zip(&at)
        .map(|(p, &c)| (address(p), c, 0))
        .collect();
    drop(at);
    // The radix sort wants spread top bits: addresses relative to the
    // lowest, scaled to the whole range (order preserved).
    let (lo, hi) = mine
        .iter()
        .chain(&held)
        .fold((u64::MAX, 0), |(lo, hi), e| (lo.min(e.0), hi.max(e.0)));
    let shift = (hi - lo).leading_zeros() % 64;
    let spread = |a: u64| (a - lo) << shift;
    let mut scratch = Vec::new();
    if mine.windows(2).any(|w| w[0].0 > w[1].0) {
        sort_by_u64_in(&mut mine, &mut scratch, |e| spread(e.0), |_| {});
    }
    sort_by_u64_in(&mut held, &mut scratch, |e| spread(e.0), |_| {});
    drop(scratch);
    let mut unmatched = Vec::new();
    let mut j = 0;
    for &(a, w, seq) in &held {
        while j < mine.len() && mine[j].0 < a {
            j += 1;
        }
        match mine.get(j) {
            Some(&(b, c, _)) if b == a => claim(&mut owner[c as usize], w),
            _ => unmatched.push(seq),
        }
    }
    unmatched
}

/// Keeps the first worker in id order: a partition listed under several
/// live workers (a corrupt placement) belongs to the first of them.
fn claim(owner: &mut u32, worker: u32) {
    *owner = (*owner).min(worker);
}

/// Matches the entries at positions `unmatched` (among the live entries of
/// `lists`, in order) by hash, then id.
fn by_id(
    lists: &[(u32, &[Partition])],
    input: &[Partition],
    parts: &[Keyed],
    mut unmatched: Vec<u32>,
    owner: &mut [u32],
) {
    unmatched.sort_unstable();
    let mut wanted = unmatched.into_iter().peekable();
    let mut entries: Vec<(u64, u32, &str)> = live_entries(lists)
        .filter(|&(_, seq, _)| wanted.next_if_eq(&seq).is_some())
        .map(|(w, _, p)| (key_hash(p.id()), w, p.id()))
        .collect();
    sort_by_u64(&mut entries, |e| e.0);
    let mut j = 0;
    for &(hash, w, id) in &entries {
        while j < parts.len() && parts[j].hash < hash {
            j += 1;
        }
        // Ids sharing a hash are adjacent in `parts`.
        let same = parts[j..].iter().take_while(|k| k.hash == hash);
        if let Some(c) = same
            .enumerate()
            .find(|(_, k)| input[k.index as usize].id() == id)
            .map(|(c, _)| j + c)
        {
            claim(&mut owner[c], w);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::strategy::common::keyed_partitions;

    /// The rule stated on `previous_owners`, the obvious way.
    fn reference(
        workers: &[&str],
        parts: &[Keyed],
        input: &[Partition],
        prev: &Placement,
    ) -> Vec<u32> {
        let mut first: HashMap<&str, u32> = HashMap::new();
        for (w, list) in prev {
            if let Ok(w) = workers.binary_search(&w.as_str()) {
                for p in list {
                    first.entry(p.id()).or_insert(w as u32);
                }
            }
        }
        parts
            .iter()
            .map(|k| {
                first
                    .get(input[k.index as usize].id())
                    .copied()
                    .unwrap_or(NO_OWNER)
            })
            .collect()
    }

    #[test]
    fn every_way_of_matching_finds_the_first_live_owner() {
        // Enough ids for several batches of index locations.
        let input: Vec<Partition> = (0..40_000)
            .map(|i| Partition::new(format!("p{i}")))
            .collect();
        let parts = keyed_partitions(&input).unwrap();
        let workers = ["a", "b", "c"];
        let anew = |p: &Partition| Partition::new(p.id().to_string());
        // Shared ids, ids built anew (as if read from the store), an unknown
        // id, a partition under two live workers, a dead worker.
        let prev = Placement::from([
            (
                "a".to_string(),
                input[..2000].iter().map(anew).collect::<Vec<_>>(),
            ),
            ("b".to_string(), input[1000..4000].to_vec()),
            (
                "c".to_string(),
                vec![Partition::new("gone"), input[5000].clone()],
            ),
            ("dead".to_string(), input[4000..].to_vec()),
        ]);
        // An index by address when the ids lie close together (depends on
        // the allocator: ids spread over two arenas do not), or always the
        // sorted join (`None`); each must give the stated rule.
        let want = reference(&workers, &parts, &input, &prev);
        assert_eq!(want.iter().filter(|&&o| o == 0).count(), 2000);
        assert_eq!(want.iter().filter(|&&o| o == 1).count(), 2000);
        assert_eq!(want.iter().filter(|&&o| o == 2).count(), 1);
        for index in [Some(Kind::Any), Some(Kind::Bucketed), None] {
            for batch_from in [BATCH_FROM, 0] {
                let got = owners_by(&workers, &input, &parts, &prev, index, batch_from);
                assert_eq!(got, want, "{index:?}, batches from {batch_from}");
            }
        }
        // Only ids built anew: everything goes through the match by id.
        let fresh: Placement = prev
            .iter()
            .map(|(w, l)| (w.clone(), l.iter().map(anew).collect()))
            .collect();
        for index in [Some(Kind::Any), Some(Kind::Bucketed), None] {
            for batch_from in [BATCH_FROM, 0] {
                let got = owners_by(&workers, &input, &parts, &fresh, index, batch_from);
                assert_eq!(got, want, "{index:?}, batches from {batch_from}");
            }
        }
    }

    #[test]
    fn batched_lookups_agree_with_one_by_one() {
        let workers = ["a", "b", "c"];
        let mut checked = 0;
        // Ids allocated among other tests' allocations may be too spread
        // for an index (then `new` rightly declines): a few tries, kept so
        // that the next cannot reuse the same holes.
        let mut kept = Vec::new();
        for _ in 0..5 {
            let input: Vec<Partition> = (0..40_000)
                .map(|i| Partition::new(format!("p{i}")))
                .collect();
            let parts = keyed_partitions(&input).unwrap();
            let mut at = vec![0u32; input.len()];
            for (c, k) in parts.iter().enumerate() {
                at[k.index as usize] = c as u32;
            }
            // Clones only (a partition under two workers included), so every
            // entry is in the index and the batches run to the end.
            let prev = Placement::from([
                ("a".to_string(), input[..2000].to_vec()),
                ("b".to_string(), input[1000..30_000].to_vec()),
                ("c".to_string(), input[30_000..].to_vec()),
            ]);
            let lists: Vec<(u32, &[Partition])> = prev
                .values()
                .enumerate()
                .map(|(w, l)| (w as u32, l.as_slice()))
                .collect();
            let want = reference(&workers, &parts, &input, &prev);
            for kind in [Kind::Any, Kind::Bucketed] {
                let Some(index) = AddressIndex::new(&input, &at, kind) else {
                    continue;
                };
                assert!(index.locations() >> BATCH_BITS >= 2, "one batch only");
                let mut one = vec![NO_OWNER; parts.len()];
                let left_one = one_by_one(&index, &lists, &mut one);
                let mut batched = vec![NO_OWNER; parts.len()];
                let total = lists.iter().map(|(_, l)| l.len()).sum();
                let mut left = in_batches(&index, &lists, total, &mut batched)
                    .expect("every entry shares an input id");
                left.sort_unstable();
                assert_eq!((&batched, &left), (&one, &left_one), "{kind:?}");
                if left_one.is_empty() {
                    assert_eq!(one, want, "{kind:?}");
                }
                checked += 1;
            }
            if checked > 0 {
                break;
            }
            kept.push(input);
        }
        assert!(checked > 0, "no index in five allocations");
    }
}
