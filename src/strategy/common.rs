//! Validation, hashing and output building shared by every strategy, so each
//! strategy only decides *who owns what*.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::radix::{for_each_tie, sort_by_u64};
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

/// A validated partition with its ring position.
#[derive(Clone, Copy)]
pub(crate) struct Keyed<'a> {
    pub(crate) hash: u64,
    pub(crate) part: &'a Partition,
    /// Position in the caller's partition slice.
    pub(crate) index: u32,
    /// Length of the id and its first 16 bytes: with them, matching an id
    /// of up to 16 bytes needs no read of the partition itself, which with
    /// a million partitions is a cache miss each.
    pub(crate) len: u32,
    pub(crate) prefix: [u8; 16],
}

impl Keyed<'_> {
    /// Whether this partition's id is `id`, whose hash is `hash`.
    pub(crate) fn is(&self, hash: u64, id: &str) -> bool {
        self.hash == hash
            && self.len as usize == id.len()
            && self.prefix == prefix_bytes(id)
            && (id.len() <= 16 || self.part.id() == id)
    }
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
pub(crate) fn keyed_partitions(partitions: &[Partition]) -> Result<Vec<Keyed<'_>>, Error> {
    let mut keyed = Vec::with_capacity(partitions.len());
    for (index, part) in partitions.iter().enumerate() {
        if part.id().is_empty() {
            return Err(Error::InvalidPartition {
                id: String::new(),
                reason: "empty partition id".to_string(),
            });
        }
        keyed.push(Keyed {
            hash: key_hash(part.id()),
            part,
            index: index as u32,
            len: part.id().len() as u32,
            prefix: prefix_bytes(part.id()),
        });
    }
    sort_by_u64(&mut keyed, |k| k.hash);
    for_each_tie(
        &mut keyed,
        |k| k.hash,
        |run| run.sort_unstable_by(|a, b| a.part.id().cmp(b.part.id())),
    );
    // Equal ids have equal hashes: only compare ids where hashes tie.
    if let Some(pair) = keyed
        .windows(2)
        .find(|w| w[0].hash == w[1].hash && w[0].part.id() == w[1].part.id())
    {
        return Err(Error::DuplicatePartition {
            id: pair[0].part.id().to_string(),
        });
    }
    Ok(keyed)
}

/// The weight strategies balance on. A weight of 0 counts as 1: a partition
/// that costs nothing would otherwise be free to pile up on one worker, and
/// capacity arithmetic stays strictly positive.
pub(crate) fn effective_weight(part: &Partition) -> u64 {
    u64::from(part.weight().max(1))
}

/// Turns `owner[i]` (a worker index for `parts[i]`, or `NO_OWNER`) into a
/// [`Placement`] in which every worker appears, each list sorted by id;
/// `input` is the slice `parts` was built from.
pub(crate) fn build_placement(
    workers: &[&str],
    input: &[Partition],
    parts: &[Keyed<'_>],
    owner: &[u32],
) -> Placement {
    // Everything that reads a partition walks `input` in order: with a
    // million partitions, reading ids and cloning them in memory order
    // instead of placement order is what keeps this pass fast.
    let mut by_input = vec![NO_OWNER; input.len()];
    for (k, &o) in parts.iter().zip(owner) {
        by_input[k.index as usize] = o;
    }
    // Group input positions by worker (a counting sort)...
    let mut start = vec![0usize; workers.len() + 1];
    for &o in &by_input {
        if let Some(s) = start.get_mut(o as usize + 1) {
            *s += 1;
        }
    }
    for w in 0..workers.len() {
        start[w + 1] += start[w];
    }
    let mut next = start.clone();
    // ...keyed by the first 16 bytes of the id, so most comparisons below
    // are one integer compare.
    let mut grouped = vec![(0u128, 0u32); start[workers.len()]];
    for (i, (&o, p)) in by_input.iter().zip(input).enumerate() {
        if let Some(at) = next.get_mut(o as usize) {
            grouped[*at] = (id_prefix(p.id()), i as u32);
            *at += 1;
        }
    }
    let mut clones: Vec<Option<Partition>> = by_input
        .iter()
        .zip(input)
        .map(|(&o, p)| (o != NO_OWNER).then(|| p.clone()))
        .collect();
    workers
        .iter()
        .enumerate()
        .map(|(w, id)| {
            let group = &mut grouped[start[w]..start[w + 1]];
            group.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| input[a.1 as usize].id().cmp(input[b.1 as usize].id()))
            });
            let list = group
                .iter()
                .filter_map(|&(_, i)| clones[i as usize].take())
                .collect();
            ((*id).to_string(), list)
        })
        .collect()
}

/// The first 16 bytes of `id` as a big-endian integer, zero-padded: ordered
/// like the ids themselves except where two ids share those 16 bytes.
fn id_prefix(id: &str) -> u128 {
    u128::from_be_bytes(prefix_bytes(id))
}

/// The first 16 bytes of `id`, zero-padded.
fn prefix_bytes(id: &str) -> [u8; 16] {
    let mut buf = [0u8; 16];
    let n = id.len().min(16);
    buf[..n].copy_from_slice(&id.as_bytes()[..n]);
    buf
}
