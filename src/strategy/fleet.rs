//! Who may and who should own each partition: required labels become
//! eligibility classes, preferred labels preference groups, both computed
//! once per call so the placement passes only compare small integers.

use std::collections::BTreeMap;

use super::common::Keyed;
use super::worker::WorkerInfo;
use crate::{Error, Partition};

/// Class of the partitions without required labels: every worker is eligible.
pub(crate) const FREE: u32 = 0;
/// Class of a partition no live worker may own: it stays unowned.
pub(crate) const PARKED: u32 = u32::MAX;
/// Preference group of a partition without (satisfiable) preferred labels.
pub(crate) const NO_PREF: u32 = u32::MAX;

/// A set of partitions sharing the same required labels.
pub(crate) struct Class {
    /// `eligible[w]`: worker `w` carries every required label.
    pub(crate) eligible: Vec<bool>,
    /// The eligible workers, ascending.
    pub(crate) members: Vec<u32>,
}

/// Partitions of one class sharing the same preferred labels.
pub(crate) struct PrefGroup {
    /// `preferred[w]`: `w` is eligible and carries every preferred label.
    pub(crate) preferred: Vec<bool>,
}

/// The placement-relevant facts about workers and partitions.
pub(crate) struct Fleet {
    /// Capacity of each worker (sorted id order), at least 1.
    pub(crate) capacity: Vec<u64>,
    /// Whether any partition has a label constraint or any capacity differs:
    /// when not, BoundedLoad runs exactly its label-free algorithm.
    pub(crate) constrained: bool,
    /// `classes[FREE]` is the label-free class.
    pub(crate) classes: Vec<Class>,
    /// Class of `parts[i]` (canonical order), or [`PARKED`]. Empty when no
    /// partition has required labels: all are [`FREE`].
    pub(crate) class_of: Vec<u32>,
    pub(crate) prefs: Vec<PrefGroup>,
    /// Preference group of `parts[i]`, or [`NO_PREF`]; empty when none.
    pub(crate) pref_of: Vec<u32>,
}

impl Fleet {
    /// Every worker of capacity 1, no constraints.
    pub(crate) fn uniform(workers: usize) -> Fleet {
        Fleet {
            capacity: vec![1; workers],
            constrained: false,
            classes: vec![Class {
                eligible: vec![true; workers],
                members: (0..workers as u32).collect(),
            }],
            class_of: Vec::new(),
            prefs: Vec::new(),
            pref_of: Vec::new(),
        }
    }

    /// Classifies `parts` for `workers` (sorted by id, deduplicated).
    pub(crate) fn new(workers: &[&WorkerInfo], parts: &[Keyed<'_>]) -> Fleet {
        let mut fleet = Fleet::uniform(workers.len());
        fleet.capacity = workers
            .iter()
            .map(|w| u64::from(w.capacity_value().max(1)))
            .collect();
        let uneven = fleet.capacity.windows(2).any(|c| c[0] != c[1]);
        // Distinct constraint sets seen so far, searched linearly: there are
        // few, and partitions built alike usually come in runs.
        let mut required: Vec<(&BTreeMap<String, String>, u32)> = Vec::new();
        let mut preferred: Vec<(u32, &BTreeMap<String, String>, u32)> = Vec::new();
        let labelled = parts.iter().any(|k| has_labels(k.part));
        if labelled {
            fleet.class_of = vec![FREE; parts.len()];
            fleet.pref_of = vec![NO_PREF; parts.len()];
        }
        for (i, k) in parts.iter().enumerate().filter(|_| labelled) {
            let (req, pref) = (k.part.required_labels(), k.part.preferred_labels());
            let class = if req.is_empty() {
                FREE
            } else {
                match required.iter().find(|(r, _)| *r == req) {
                    Some(&(_, c)) => c,
                    None => {
                        let c = fleet.add_class(workers, req);
                        required.push((req, c));
                        c
                    }
                }
            };
            fleet.class_of[i] = class;
            if class == PARKED || pref.is_empty() {
                continue;
            }
            fleet.pref_of[i] = match preferred
                .iter()
                .find(|(c, p, _)| *c == class && *p == pref)
            {
                Some(&(_, _, g)) => g,
                None => {
                    let g = fleet.add_pref(workers, class, pref);
                    preferred.push((class, pref, g));
                    g
                }
            };
        }
        fleet.constrained = uneven || labelled;
        fleet
    }

    fn add_class(&mut self, workers: &[&WorkerInfo], req: &BTreeMap<String, String>) -> u32 {
        let eligible: Vec<bool> = workers.iter().map(|w| w.matches(req)).collect();
        if !eligible.contains(&true) {
            return PARKED;
        }
        let members = (0..workers.len() as u32)
            .filter(|&w| eligible[w as usize])
            .collect();
        self.classes.push(Class { eligible, members });
        (self.classes.len() - 1) as u32
    }

    fn add_pref(
        &mut self,
        workers: &[&WorkerInfo],
        class: u32,
        pref: &BTreeMap<String, String>,
    ) -> u32 {
        let eligible = &self.classes[class as usize].eligible;
        let preferred: Vec<bool> = workers
            .iter()
            .zip(eligible)
            .map(|(w, &e)| e && w.matches(pref))
            .collect();
        if !preferred.contains(&true) {
            return NO_PREF;
        }
        self.prefs.push(PrefGroup { preferred });
        (self.prefs.len() - 1) as u32
    }

    /// Class of partition `i`.
    pub(crate) fn class(&self, i: usize) -> u32 {
        self.class_of.get(i).copied().unwrap_or(FREE)
    }

    /// Preference group of partition `i`.
    pub(crate) fn pref(&self, i: usize) -> u32 {
        self.pref_of.get(i).copied().unwrap_or(NO_PREF)
    }

    /// Whether worker `w` may own partition `i`.
    pub(crate) fn eligible(&self, i: usize, w: usize) -> bool {
        match self.class(i) {
            PARKED => false,
            c => self.classes[c as usize].eligible[w],
        }
    }

    /// Whether `w` is one of the workers partition `i` prefers; false when
    /// it prefers none.
    pub(crate) fn preferred(&self, i: usize, w: usize) -> bool {
        match self.pref(i) {
            NO_PREF => false,
            g => self.prefs[g as usize].preferred[w],
        }
    }
}

fn has_labels(p: &Partition) -> bool {
    !p.required_labels().is_empty() || !p.preferred_labels().is_empty()
}

/// Workers sorted by id and deduplicated (for a repeated id, the smallest
/// descriptor wins, whatever the input order), with the same errors as
/// `sorted_workers`.
pub(crate) fn sorted_infos(workers: &[WorkerInfo]) -> Result<Vec<&WorkerInfo>, Error> {
    if workers.is_empty() {
        return Err(Error::NoWorkers);
    }
    if workers.iter().any(|w| w.id().is_empty()) {
        return Err(Error::InvalidPartition {
            id: String::new(),
            reason: "empty worker id".to_string(),
        });
    }
    let mut sorted: Vec<&WorkerInfo> = workers.iter().collect();
    sorted.sort_unstable_by(|a, b| {
        a.id()
            .cmp(b.id())
            .then(a.capacity_value().cmp(&b.capacity_value()))
            .then_with(|| a.labels().cmp(b.labels()))
    });
    sorted.dedup_by(|a, b| a.id() == b.id());
    Ok(sorted)
}
