//! The ownership ledger: from every worker's callbacks, the intervals during
//! which it owned each partition, on one wall clock (same host). Used to
//! prove that no partition was ever owned by two workers at once.

use std::collections::BTreeMap;

use super::{ChildWorker, Event};

/// One worker process owning one partition from `start` to `end` (wall-clock
/// micros; `None` = still owns it).
#[derive(Clone, Debug)]
pub struct Interval {
    pub partition: String,
    pub owner: String,
    pub start: u64,
    pub end: Option<u64>,
}

/// Intervals from one worker's assignment events. Ownership of an added
/// partition starts when the callback begins; of a removed one it ends when
/// the callback returns; a killed worker owns nothing after the kill.
pub fn intervals(owner: &str, events: &[Event], killed_at: Option<u64>) -> Vec<Interval> {
    let mut open: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e["event"] == "assignment") {
        let (Some(begin), Some(end)) = (e["t_begin"].as_u64(), e["t_end"].as_u64()) else {
            continue;
        };
        for p in e["removed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
        {
            if let Some(start) = open.remove(p) {
                out.push(Interval {
                    partition: p.to_string(),
                    owner: owner.to_string(),
                    start,
                    end: Some(end),
                });
            }
        }
        for p in e["added"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
        {
            open.entry(p.to_string()).or_insert(begin);
        }
    }
    for (p, start) in open {
        out.push(Interval {
            partition: p,
            owner: owner.to_string(),
            start,
            end: killed_at,
        });
    }
    out
}

/// The whole ledger of a set of workers (live and dead).
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    pub intervals: Vec<Interval>,
}

impl Ledger {
    pub fn of(workers: &[&ChildWorker]) -> Ledger {
        let mut intervals = Vec::new();
        for w in workers {
            intervals.extend(self::intervals(&w.label(), &w.events(), w.killed_at));
        }
        Ledger { intervals }
    }

    /// A ledger of in-process managers: (label, events), none killed.
    pub fn of_events(parts: &[(String, Vec<Event>)]) -> Ledger {
        let mut intervals = Vec::new();
        for (label, events) in parts {
            intervals.extend(self::intervals(label, events, None));
        }
        Ledger { intervals }
    }

    fn by_partition(&self) -> BTreeMap<&str, Vec<&Interval>> {
        let mut map: BTreeMap<&str, Vec<&Interval>> = BTreeMap::new();
        for i in &self.intervals {
            map.entry(i.partition.as_str()).or_default().push(i);
        }
        for v in map.values_mut() {
            v.sort_by_key(|i| i.start);
        }
        map
    }

    /// Every pair of intervals of one partition that overlap in time.
    pub fn overlaps(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (p, ivs) in self.by_partition() {
            for (i, a) in ivs.iter().enumerate() {
                for b in &ivs[i + 1..] {
                    if a.end.is_none_or(|end| end > b.start) {
                        found.push(format!(
                            "{p}: {} [{}..{:?}] overlaps {} [{}..{:?}]",
                            a.owner, a.start, a.end, b.owner, b.start, b.end
                        ));
                    }
                }
            }
        }
        found
    }

    /// Current owner of each partition (open intervals).
    pub fn owners_now(&self) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in self.intervals.iter().filter(|i| i.end.is_none()) {
            map.entry(i.partition.clone())
                .or_default()
                .push(i.owner.clone());
        }
        map
    }

    /// Owner of each partition at wall time `t`.
    pub fn owners_at(&self, t: u64) -> BTreeMap<String, String> {
        self.intervals
            .iter()
            .filter(|i| i.start <= t && i.end.is_none_or(|e| e > t))
            .map(|i| (i.partition.clone(), i.owner.clone()))
            .collect()
    }

    /// The longest time (micros) a partition had no owner between `from` and
    /// `to`, for the given partitions.
    pub fn longest_unowned(&self, partitions: &[String], from: u64, to: u64) -> u64 {
        self.longest_gap(partitions, from, to).0
    }

    /// The longest unowned stretch between `from` and `to`: (micros,
    /// partition, wall-clock micros it began), for failure messages.
    pub fn longest_gap(&self, partitions: &[String], from: u64, to: u64) -> (u64, String, u64) {
        let by = self.by_partition();
        let mut worst = (0, String::new(), 0);
        let mut note = |len: u64, p: &str, at: u64| {
            if len > worst.0 {
                worst = (len, p.to_string(), at);
            }
        };
        for p in partitions {
            let mut covered_until = from;
            for i in by.get(p.as_str()).into_iter().flatten() {
                let end = i.end.unwrap_or(u64::MAX);
                if end <= covered_until {
                    continue;
                }
                if i.start > covered_until {
                    note(i.start.min(to) - covered_until, p, covered_until);
                }
                covered_until = covered_until.max(end);
                if covered_until >= to {
                    break;
                }
            }
            if covered_until < to {
                note(to - covered_until, p, covered_until);
            }
        }
        worst
    }

    /// Partitions that had the same owner at `from` and `to` but were
    /// released in between.
    pub fn revoked_but_unmoved(&self, from: u64, to: u64) -> Vec<String> {
        let before = self.owners_at(from);
        let after = self.owners_at(to);
        let by = self.by_partition();
        before
            .iter()
            .filter(|(p, o)| after.get(*p) == Some(o))
            .filter(|(p, _)| {
                by[p.as_str()]
                    .iter()
                    .any(|i| i.start < to && i.end.is_some_and(|e| e > from && e <= to))
            })
            .map(|(p, _)| p.clone())
            .collect()
    }
}
