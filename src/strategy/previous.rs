//! Finding each partition's owner in the previous placement.
//!
//! The leader passes back the placement a strategy returned, whose
//! partitions are clones of the ones it passes in: their ids share one
//! allocation. So most previous entries are matched by the address of their
//! id, which needs neither a read of the id nor a hash of it; the rest (a
//! placement read back from the store, ids built anew) are matched by hash
//! and id. Both matches are joins of two arrays sorted by the same key,
//! so every pass over a million entries walks memory in order.

use super::common::{key_hash, Keyed, NO_OWNER};
use super::radix::{sort_by_u64, sort_by_u64_in};
use crate::{Partition, Placement};

/// The address of a partition's id: equal for two partitions exactly when
/// their ids are one allocation. Each id is its own allocation (`Arc<str>`)
/// and every partition compared here is borrowed for the whole call, so one
/// address means one id; empty ids, which need no allocation, are never
/// looked up.
fn address(p: &Partition) -> u64 {
    p.id().as_ptr() as usize as u64
}

/// `owner[i]` for `parts[i]` (canonical order): the first live worker (in id
/// order) that lists it in `previous`, or `NO_OWNER`. Dead workers and
/// unknown partitions are ignored.
pub(crate) fn previous_owners(
    workers: &[&str],
    input: &[Partition],
    parts: &[Keyed],
    previous: &Placement,
) -> Vec<u32> {
    let mut owner = vec![NO_OWNER; parts.len()];
    // (key, worker, position among the live entries) of every entry of a
    // live worker; workers come in id order.
    let mut held: Vec<(u64, u32, u32)> = Vec::new();
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
    held.reserve_exact(total);
    for &(w, list) in &lists {
        for p in list {
            if !p.id().is_empty() {
                held.push((address(p), w, held.len() as u32));
            }
        }
    }
    // (address, canonical position) of each input partition; already in
    // address order when the partitions were allocated in the order listed.
    let mut at = vec![0u32; input.len()];
    for (c, k) in parts.iter().enumerate() {
        at[k.index as usize] = c as u32;
    }
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
        .map(|e| e.0)
        .chain(held.iter().map(|e| e.0))
        .fold((u64::MAX, 0), |(lo, hi), a| (lo.min(a), hi.max(a)));
    let shift = (hi - lo).leading_zeros() % 64;
    let spread = |a: u64| (a - lo) << shift;
    let mut scratch = Vec::new();
    if mine.windows(2).any(|w| w[0].0 > w[1].0) {
        sort_by_u64_in(&mut mine, &mut scratch, |e| spread(e.0), |_| {});
    }
    sort_by_u64_in(&mut held, &mut scratch, |e| spread(e.0), |_| {});
    drop(scratch);
    let mut unmatched: Vec<u32> = Vec::new();
    let mut j = 0;
    for &(key, w, seq) in &held {
        while j < mine.len() && mine[j].0 < key {
            j += 1;
        }
        match mine.get(j) {
            Some(&(k, c, _)) if k == key => claim(&mut owner[c as usize], w),
            _ => unmatched.push(seq),
        }
    }
    if !unmatched.is_empty() {
        by_id(&lists, input, parts, unmatched, &mut owner);
    }
    owner
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
    let mut seq = 0u32;
    let mut entries: Vec<(u64, u32, &str)> = Vec::new();
    for &(w, list) in lists {
        for p in list.iter().filter(|p| !p.id().is_empty()) {
            if wanted.next_if_eq(&seq).is_some() {
                entries.push((key_hash(p.id()), w, p.id()));
            }
            seq += 1;
        }
    }
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
