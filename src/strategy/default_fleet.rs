//! `assign_workers` for strategies that know nothing of labels: hard
//! constraints honored by running the strategy once per set of required
//! labels, over the workers that carry them.

use std::collections::BTreeMap;

use super::common::keyed_partitions;
use super::fleet::sorted_infos;
use super::{AssignmentStrategy, WorkerInfo};
use crate::{Error, Partition, Placement};

pub(crate) fn assign_by_class<S: AssignmentStrategy + ?Sized>(
    strategy: &S,
    workers: &[WorkerInfo],
    partitions: &[Partition],
    previous: &Placement,
) -> Result<Placement, Error> {
    let infos = sorted_infos(workers)?;
    let ids: Vec<String> = infos.iter().map(|w| w.id().to_string()).collect();
    if partitions.iter().all(|p| p.required_labels().is_empty()) {
        return strategy.assign(&ids, partitions, previous);
    }
    // Split below hides duplicates that land in different classes.
    keyed_partitions(partitions)?;
    let mut free = Vec::new();
    let mut classes: Vec<(&BTreeMap<String, String>, Vec<Partition>)> = Vec::new();
    for p in partitions {
        let req = p.required_labels();
        if req.is_empty() {
            free.push(p.clone());
        } else if let Some((_, list)) = classes.iter_mut().find(|(r, _)| *r == req) {
            list.push(p.clone());
        } else {
            classes.push((req, vec![p.clone()]));
        }
    }
    let mut out = strategy.assign(&ids, &free, previous)?;
    for (req, list) in classes {
        let eligible: Vec<String> = infos
            .iter()
            .filter(|w| w.matches(req))
            .map(|w| w.id().to_string())
            .collect();
        if eligible.is_empty() {
            continue; // parked: absent from the result
        }
        for (w, placed) in strategy.assign(&eligible, &list, previous)? {
            out.entry(w).or_default().extend(placed);
        }
    }
    for list in out.values_mut() {
        list.sort_unstable_by(|a, b| a.id().cmp(b.id()));
    }
    Ok(out)
}
