//! Measuring a rebalance: how many partitions moved, and the least any
//! balanced placement could have moved.

use std::collections::{BTreeSet, HashMap};

use crate::{Partition, Placement};

/// First owner of each partition id in `placement` (workers in id order).
fn owners(placement: &Placement) -> HashMap<&str, &str> {
    let mut map = HashMap::new();
    for (worker, parts) in placement {
        for p in parts {
            map.entry(p.id()).or_insert(worker.as_str());
        }
    }
    map
}

/// Number of partitions of `next` whose owner differs from the one they had
/// in `previous`. Partitions new in `next` (absent from `previous`) do not
/// count: they had nowhere to move from.
///
/// ```
/// use parti::strategy::moved;
/// use parti::{Partition, Placement};
///
/// let before = Placement::from([("a".to_string(), vec![Partition::new("1"), Partition::new("2")])]);
/// let after = Placement::from([
///     ("a".to_string(), vec![Partition::new("1")]),
///     ("b".to_string(), vec![Partition::new("2"), Partition::new("3")]),
/// ]);
/// assert_eq!(moved(&before, &after), 1);
/// ```
pub fn moved(previous: &Placement, next: &Placement) -> usize {
    let before = owners(previous);
    let mut count = 0;
    for (worker, parts) in next {
        for p in parts {
            if before.get(p.id()).is_some_and(|w| *w != worker.as_str()) {
                count += 1;
            }
        }
    }
    count
}

/// The fewest partitions any count-balanced placement of `partitions` over
/// `workers` must move away from `previous`, ignoring weights.
///
/// "Balanced" means every worker holds ⌊N/n⌋ or ⌈N/n⌉ partitions (so exactly
/// `N mod n` of them hold ⌈N/n⌉). With `kept(w)` the partitions `w` held in
/// `previous` that still exist, the minimum is
///
/// `orphans + Σ_w max(0, kept(w) − cap(w))`
///
/// where `orphans` counts the existing partitions whose previous owner is not
/// in `workers`, and `cap(w)` is ⌈N/n⌉ for the `N mod n` workers with the
/// largest `kept(w)` and ⌊N/n⌋ for the others (any other choice of who gets
/// the larger share can only shed more). Partitions absent from `previous`
/// are not counted, as in [`moved`]. Returns 0 when `workers` is empty.
///
/// ```
/// use parti::strategy::minimum_moves;
/// use parti::{Partition, Placement};
///
/// let parts: Vec<Partition> = (0..4).map(|i| Partition::new(i.to_string())).collect();
/// let before = Placement::from([("a".to_string(), parts.clone())]);
/// // A second worker joins: it must receive 2 of a's 4 partitions.
/// assert_eq!(minimum_moves(&before, &["a".into(), "b".into()], &parts), 2);
/// ```
pub fn minimum_moves(previous: &Placement, workers: &[String], partitions: &[Partition]) -> usize {
    let live: BTreeSet<&str> = workers.iter().map(String::as_str).collect();
    if live.is_empty() {
        return 0;
    }
    let before = owners(previous);
    let mut kept: HashMap<&str, usize> = live.iter().map(|w| (*w, 0)).collect();
    let mut orphans = 0;
    let existing: BTreeSet<&str> = partitions.iter().map(Partition::id).collect();
    for id in &existing {
        if let Some(w) = before.get(id) {
            match kept.get_mut(w) {
                Some(k) => *k += 1,
                None => orphans += 1,
            }
        }
    }
    let n = live.len();
    let (floor, spare) = (existing.len() / n, existing.len() % n);
    let mut counts: Vec<usize> = kept.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let shed: usize = counts
        .iter()
        .enumerate()
        .map(|(rank, &k)| k.saturating_sub(floor + usize::from(rank < spare)))
        .sum();
    orphans + shed
}
