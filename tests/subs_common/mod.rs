//! A handler ledger for the subscription tests: every worker's ownership
//! intervals (from its assignment hook) and every handler call (worker,
//! partition, message, start and end), on one clock (this process's
//! `Instant`), checked against each other.
#![allow(dead_code)]

pub mod child;
pub mod flow;
pub mod scenario;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use parti::AssignmentChange;

/// (worker, partition) -> ownership intervals [grant, release).
pub type Intervals = BTreeMap<(String, String), Vec<(Instant, Option<Instant>)>>;

#[derive(Clone, Debug)]
pub enum Ev {
    /// Logged before the helper's `apply` runs for an added partition.
    Grant {
        worker: String,
        partition: String,
        at: Instant,
    },
    /// Logged after the helper's `apply` returned for a removed partition.
    Release {
        worker: String,
        partition: String,
        at: Instant,
    },
    Handled {
        worker: String,
        partition: String,
        msg: u64,
        start: Instant,
        end: Instant,
    },
}

#[derive(Clone, Default)]
pub struct Ledger(pub Arc<Mutex<Vec<Ev>>>);

impl Ledger {
    pub fn push(&self, e: Ev) {
        self.0.lock().unwrap().push(e);
    }

    pub fn events(&self) -> Vec<Ev> {
        self.0.lock().unwrap().clone()
    }

    /// Wraps a helper's `apply` so grants and releases are logged around it.
    pub fn hook(
        &self,
        worker: &str,
        apply: impl Fn(&AssignmentChange) + Send + Sync + 'static,
    ) -> impl Fn(&AssignmentChange) + Send + Sync + 'static {
        let ledger = self.clone();
        let worker = worker.to_string();
        move |c: &AssignmentChange| {
            for p in c.added() {
                ledger.push(Ev::Grant {
                    worker: worker.clone(),
                    partition: p.id().to_string(),
                    at: Instant::now(),
                });
            }
            apply(c);
            for p in c.removed() {
                ledger.push(Ev::Release {
                    worker: worker.clone(),
                    partition: p.id().to_string(),
                    at: Instant::now(),
                });
            }
        }
    }

    pub fn handled(&self, worker: &str, partition: &str, msg: u64, start: Instant) {
        self.push(Ev::Handled {
            worker: worker.to_string(),
            partition: partition.to_string(),
            msg,
            start,
            end: Instant::now(),
        });
    }

    /// (worker, partition) -> ownership intervals [grant, release).
    pub fn intervals(&self) -> Intervals {
        let mut out = Intervals::new();
        for e in self.events() {
            match e {
                Ev::Grant {
                    worker,
                    partition,
                    at,
                } => out.entry((worker, partition)).or_default().push((at, None)),
                Ev::Release {
                    worker,
                    partition,
                    at,
                } => {
                    if let Some(last) = out.entry((worker, partition)).or_default().last_mut() {
                        last.1.get_or_insert(at);
                    }
                }
                Ev::Handled { .. } => {}
            }
        }
        out
    }

    /// Handler calls made outside the worker's ownership of the partition
    /// (e.g. by an old owner after its release). Must be empty.
    pub fn calls_outside_ownership(&self) -> Vec<String> {
        let intervals = self.intervals();
        let mut bad = Vec::new();
        for e in self.events() {
            if let Ev::Handled {
                worker,
                partition,
                msg,
                start,
                end,
            } = e
            {
                let ok = intervals
                    .get(&(worker.clone(), partition.clone()))
                    .is_some_and(|ivs| {
                        ivs.iter()
                            .any(|(g, r)| *g <= start && r.is_none_or(|r| end <= r))
                    });
                if !ok {
                    bad.push(format!(
                        "{worker} handled {partition}#{msg} outside its ownership"
                    ));
                }
            }
        }
        bad
    }

    /// Pairs of workers whose ownership of one partition overlapped. Must be
    /// empty.
    pub fn overlapping_owners(&self) -> Vec<String> {
        let mut by_partition: BTreeMap<String, Vec<(String, Instant, Option<Instant>)>> =
            BTreeMap::new();
        for ((w, p), ivs) in self.intervals() {
            for (g, r) in ivs {
                by_partition
                    .entry(p.clone())
                    .or_default()
                    .push((w.clone(), g, r));
            }
        }
        let mut bad = Vec::new();
        for (p, ivs) in by_partition {
            for (i, a) in ivs.iter().enumerate() {
                for b in &ivs[i + 1..] {
                    if a.0 == b.0 {
                        continue;
                    }
                    let a_end_after_b = a.2.is_none_or(|ae| ae > b.1);
                    let b_end_after_a = b.2.is_none_or(|be| be > a.1);
                    if a_end_after_b && b_end_after_a {
                        bad.push(format!("{p}: {} and {} overlapped", a.0, b.0));
                    }
                }
            }
        }
        bad
    }

    /// (partition, msg) -> workers that handled it, in order.
    pub fn handlers(&self) -> BTreeMap<(String, u64), Vec<(String, Instant)>> {
        let mut out: BTreeMap<(String, u64), Vec<(String, Instant)>> = BTreeMap::new();
        for e in self.events() {
            if let Ev::Handled {
                worker,
                partition,
                msg,
                start,
                ..
            } = e
            {
                out.entry((partition, msg))
                    .or_default()
                    .push((worker, start));
            }
        }
        out
    }

    /// Partitions a worker was granted.
    pub fn granted(&self, worker: &str) -> BTreeSet<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Grant {
                    worker: w,
                    partition,
                    ..
                } if w == worker => Some(partition),
                _ => None,
            })
            .collect()
    }

    /// When `worker` was last granted `partition`.
    pub fn grant_time(&self, worker: &str, partition: &str) -> Option<Instant> {
        self.events().into_iter().rev().find_map(|e| match e {
            Ev::Grant {
                worker: w,
                partition: p,
                at,
            } if w == worker && p == partition => Some(at),
            _ => None,
        })
    }
}
