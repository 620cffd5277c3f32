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

/// Builds a [`Fleet`] one input partition at a time, in the caller's
/// order, so that the hashing pass can classify each partition while its
/// memory is at hand: with labels, a partition's id and constraints are
/// separate allocations on the same page, and one pass over a million of
/// them pays the cache and TLB misses once instead of twice.
pub(crate) struct Classifier<'a> {
    workers: &'a [&'a WorkerInfo],
    fleet: Fleet,
    /// Whether any partition has labels; when not, `see` does nothing.
    labelled: bool,
    /// Distinct constraint sets seen so far, searched linearly: there are
    /// few, and partitions built alike usually come in runs.
    required: Vec<(&'a [u8], u32)>,
    preferred: Vec<(u32, &'a [u8], u32)>,
    /// The constraints and kind of the last labelled partition: partitions
    /// built alike come in runs, and one comparison with the last saves the
    /// searches.
    last: Option<(LabelKeys<'a>, (u32, u32))>,
    /// (class, preference group) by input position.
    kind_in: Vec<(u32, u32)>,
}

impl<'a> Classifier<'a> {
    pub(crate) fn new(workers: &'a [&'a WorkerInfo], input: &[Partition]) -> Self {
        let mut fleet = Fleet::uniform(workers.len());
        fleet.capacity = workers
            .iter()
            .map(|w| u64::from(w.capacity_value().max(1)))
            .collect();
        let labelled = input.iter().any(has_labels);
        Classifier {
            workers,
            fleet,
            labelled,
            required: Vec::new(),
            preferred: Vec::new(),
            last: None,
            kind_in: if labelled {
                vec![(FREE, NO_PREF); input.len()]
            } else {
                Vec::new()
            },
        }
    }

    /// Classifies `part`, the input partition at position `j`.
    pub(crate) fn see(&mut self, j: usize, part: &'a Partition) {
        if !self.labelled {
            return;
        }
        let keys = part.label_keys();
        if keys == (&[], &[]) {
            return;
        }
        if let Some((k, kind)) = self.last {
            if same_keys(k, keys) {
                self.kind_in[j] = kind;
                return;
            }
        }
        let (req, pref) = keys;
        let workers = self.workers;
        let fleet = &mut self.fleet;
        let class = if req.is_empty() {
            FREE
        } else if let Some(&(_, c)) = self.required.iter().find(|(r, _)| *r == req) {
            c
        } else {
            let c = fleet.add_class(workers, part.required_labels());
            self.required.push((req, c));
            c
        };
        self.kind_in[j].0 = class;
        if class != PARKED && !pref.is_empty() {
            let known = self
                .preferred
                .iter()
                .find(|(c, p, _)| *c == class && *p == pref);
            self.kind_in[j].1 = match known {
                Some(&(_, _, g)) => g,
                None => {
                    let g = fleet.add_pref(workers, class, part.preferred_labels());
                    self.preferred.push((class, pref, g));
                    g
                }
            };
        }
        self.last = Some((keys, self.kind_in[j]));
    }

    /// The fleet, once every input partition was seen; `parts` is the
    /// canonical order.
    pub(crate) fn finish(self, parts: &[Keyed]) -> Fleet {
        let mut fleet = self.fleet;
        let uneven = fleet.capacity.windows(2).any(|c| c[0] != c[1]);
        if self.labelled {
            // One gather for both: half the random reads of two.
            let kind_in = &self.kind_in;
            (fleet.class_of, fleet.pref_of) =
                parts.iter().map(|k| kind_in[k.index as usize]).unzip();
        }
        fleet.constrained = uneven || self.labelled;
        fleet
    }
}

/// A partition's required and preferred labels as comparable bytes.
type LabelKeys<'a> = (&'a [u8], &'a [u8]);

/// `a == b`, without reading the bytes when both are the same memory (two
/// partitions whose constraints have one slot).
fn same_keys(a: LabelKeys<'_>, b: LabelKeys<'_>) -> bool {
    let at = |s: &[u8]| (s.as_ptr(), s.len());
    (at(a.0) == at(b.0) && at(a.1) == at(b.1)) || a == b
}

fn has_labels(p: &Partition) -> bool {
    p.label_keys() != (&[], &[])
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
