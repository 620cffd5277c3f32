//! Validation, hashing and output building shared by every strategy, so each
//! strategy only decides *who owns what*.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::radix::sort_by_u64_then;
use crate::{Error, Partition, Placement};

/// Sentinel for "no owner yet" in owner vectors indexed by partition.
pub(crate) const NO_OWNER: u32 = u32::MAX;

/// Ring position of a key (partition id or worker id).
///
/// Part of the placement contract: changing it moves partitions in every
/// deployment, so the golden tests pin its output.
pub(crate) fn key_hash(id: &str) -> u64 {
    xxh3_64(id.as_bytes())
}

/// Ring position of virtual node `index` of `worker`. Seeds start at 1 so that
/// no virtual node coincides with `key_hash(worker)`.
pub(crate) fn vnode_hash(worker: &str, index: u32) -> u64 {
    xxh3_64_with_seed(worker.as_bytes(), u64::from(index) + 1)
}

/// A validated partition with its ring position: 16 bytes, so the passes
/// and sorts over a million of them move little memory. Everything else
/// about the partition is read from the caller's slice, in its order.
#[derive(Clone, Copy)]
pub(crate) struct Keyed {
    pub(crate) hash: u64,
    /// Position in the caller's partition slice.
    pub(crate) index: u32,
    /// The weight strategies balance on, read while hashing so that no later
    /// pass needs the partition itself. A weight of 0 counts as 1: a
    /// partition that costs nothing would otherwise be free to pile up on one
    /// worker, and capacity arithmetic stays strictly positive.
    pub(crate) weight: u32,
}

/// Workers sorted by id and deduplicated, so that the result never depends on
/// the order (or repetition) the caller lists them in.
pub(crate) fn sorted_workers(workers: &[String]) -> Result<Vec<&str>, Error> {
    if workers.is_empty() {
        return Err(Error::NoWorkers);
    }
    if workers.iter().any(String::is_empty) {
        return Err(Error::InvalidPartition {
            id: String::new(),
            reason: "empty worker id".to_string(),
        });
    }
    let mut sorted: Vec<&str> = workers.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    Ok(sorted)
}

/// Partitions with their hashes, sorted by `(hash, id)`: a canonical order
/// that is much cheaper to reach than sorting by id (integer compares first)
/// and that makes duplicate ids adjacent.
pub(crate) fn keyed_partitions(partitions: &[Partition]) -> Result<Vec<Keyed>, Error> {
    keyed_partitions_with(partitions, |_, _| {})
}

/// [`keyed_partitions`], calling `each(j, &partitions[j])` in the caller's
/// order from the same pass, while the partition's memory is in cache.
pub(crate) fn keyed_partitions_with<'a>(
    partitions: &'a [Partition],
    mut each: impl FnMut(usize, &'a Partition),
) -> Result<Vec<Keyed>, Error> {
    let mut keyed = Vec::with_capacity(partitions.len());
    for (index, part) in partitions.iter().enumerate() {
        each(index, part);
        if part.id().is_empty() {
            return Err(Error::InvalidPartition {
                id: String::new(),
                reason: "empty partition id".to_string(),
            });
        }
        keyed.push(Keyed {
            hash: key_hash(part.id()),
            index: index as u32,
            weight: part.weight().max(1),
        });
    }
    let id = |k: &Keyed| partitions[k.index as usize].id();
    // Equal ids have equal hashes: only compare ids where hashes tie.
    let mut duplicate = None;
    sort_by_u64_then(
        &mut keyed,
        |k| k.hash,
        |run| {
            run.sort_unstable_by(|a, b| id(a).cmp(id(b)));
            if duplicate.is_none() {
                duplicate = run
                    .windows(2)
                    .find(|w| id(&w[0]) == id(&w[1]))
                    .map(|w| w[0]);
            }
        },
    );
    match duplicate {
        Some(k) => Err(Error::DuplicatePartition {
            id: id(&k).to_string(),
        }),
        None => Ok(keyed),
    }
}

/// Turns `owner[i]` (a worker index for `parts[i]`, or `NO_OWNER`) into a
/// [`Placement`] in which every worker appears, each list sorted by id;
/// `input` is the slice `parts` was built from.
pub(crate) fn build_placement(
    workers: &[&str],
    input: &[Partition],
    parts: &[Keyed],
    owner: &[u32],
) -> Placement {
    // Everything that reads a partition walks `input` in order: with a
    // million partitions, reading ids and cloning them in memory order
    // instead of placement order is what keeps this pass fast.
    let mut by_input = vec![NO_OWNER; input.len()];
    for (k, &o) in parts.iter().zip(owner) {
        by_input[k.index as usize] = o;
    }
    // Each worker's slots, contiguous (a counting sort)...
    let mut start = vec![0usize; workers.len() + 1];
    for &o in &by_input {
        if let Some(s) = start.get_mut(o as usize + 1) {
            *s += 1;
        }
    }
    for w in 0..workers.len() {
        start[w + 1] += start[w];
    }
    // Clone into each worker's final list in input order, and note each
    // id's first 16 bytes at the same slot, while the id is in cache.
    let mut lists: Vec<Vec<Partition>> = (0..workers.len())
        .map(|w| Vec::with_capacity(start[w + 1] - start[w]))
        .collect();
    let mut prefix = vec![0u128; start[workers.len()]];
    for (p, &o) in input.iter().zip(&by_input) {
        if let Some(list) = lists.get_mut(o as usize) {
            prefix[start[o as usize] + list.len()] = id_prefix(p.id());
            list.push(p.clone());
        }
    }
    // Then sort each list by id: an order over its slots, mostly by integer
    // compares, applied in place.
    let mut order: Vec<u32> = Vec::new();
    for (w, list) in lists.iter_mut().enumerate() {
        let prefix = &prefix[start[w]..start[w + 1]];
        order.clear();
        order.extend(0..list.len() as u32);
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            prefix[a]
                .cmp(&prefix[b])
                .then_with(|| list[a].id().cmp(list[b].id()))
        });
        permute(list, &mut order);
    }
    workers
        .iter()
        .zip(lists)
        .map(|(id, list)| ((*id).to_string(), list))
        .collect()
}

/// Reorders `list` so that it holds `list[order[0]], list[order[1]], …`,
/// by following the permutation's cycles (each element moves once, no
/// clone); `order` is used up.
fn permute<T>(list: &mut [T], order: &mut [u32]) {
    for start in 0..list.len() {
        // A position already placed (or a fixed point) points at itself.
        let mut i = start;
        loop {
            let j = order[i] as usize;
            order[i] = i as u32;
            if j == start {
                break;
            }
            list.swap(i, j);
            i = j;
        }
    }
}

/// The first 16 bytes of `id` as a big-endian integer, zero-padded: ordered
/// like the ids themselves except where two ids share those 16 bytes.
fn id_prefix(id: &str) -> u128 {
    let mut buf = [0u8; 16];
    let n = id.len().min(16);
    buf[..n].copy_from_slice(&id.as_bytes()[..n]);
    u128::from_be_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_applies_the_order() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for n in [0usize, 1, 2, 3, 7, 100] {
            let mut order: Vec<u32> = (0..n as u32).collect();
            // Fisher–Yates with a xorshift, so every length gets a mix of
            // cycles and fixed points.
            for i in (1..n).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let want: Vec<u32> = order.iter().map(|&o| o * 10).collect();
            let mut list: Vec<u32> = (0..n as u32).map(|v| v * 10).collect();
            permute(&mut list, &mut order.clone());
            assert_eq!(list, want, "n = {n}");
        }
    }
}
