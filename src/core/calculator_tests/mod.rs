//! Unit tests of the calculator with explicit instants: a little world of
//! workers that beat and acknowledge, and one test file per calculator job.

mod deadlines;
mod membership;
mod publication;
mod schedule;
mod takeover;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::calculator::{Calculator, Output, Phase, Publication};
use crate::strategy::AssignmentStrategy;
use crate::wire::{AssignmentRecord, WorkerRecord};
use crate::{Config, Error, Partition, Placement, RebalanceKind};

/// Sticky and balanced enough for these tests: keeps previous owners under
/// the cap, deals the rest in order.
struct StickyDeal;

impl AssignmentStrategy for StickyDeal {
    fn assign(
        &self,
        workers: &[String],
        partitions: &[Partition],
        previous: &Placement,
    ) -> Result<Placement, Error> {
        let n = workers.len();
        let cap = partitions.len().div_ceil(n);
        let mut out: Placement = workers.iter().map(|w| (w.clone(), Vec::new())).collect();
        let mut rest = Vec::new();
        for p in partitions {
            let owner = previous
                .iter()
                .find(|(_, ps)| ps.contains(p))
                .map(|(w, _)| w);
            match owner.and_then(|w| out.get_mut(w)) {
                Some(v) if v.len() < cap => v.push(p.clone()),
                _ => rest.push(p.clone()),
            }
        }
        for p in rest {
            let (_, v) = out
                .iter_mut()
                .min_by_key(|(_, v)| v.len())
                .ok_or(Error::NoWorkers)?;
            v.push(p);
        }
        Ok(out)
    }
}

const MS: Duration = Duration::from_millis(1);

/// A heartbeat record of incarnation 0.
fn beat_record(instance: &str, applied: u64, leaving: bool) -> WorkerRecord {
    WorkerRecord {
        instance: instance.into(),
        incarnation: 0,
        seq: 0,
        applied,
        leaving,
        host: String::new(),
        pid: 0,
        ..WorkerRecord::starting(instance, String::new(), 0)
    }
}

fn config() -> Config {
    Config {
        heartbeat_interval: MS * 100,
        heartbeat_ttl: MS * 300,
        emergency_grace: MS * 100,
        cold_start_window: MS * 1000,
        planned_scale_window: MS * 500,
        rebalance_cooldown: MS * 200,
        handoff_timeout: MS * 2000,
        ..Config::default()
    }
}

fn parts(n: usize) -> Vec<Partition> {
    (0..n).map(|i| Partition::new(format!("p{i:02}"))).collect()
}

/// A little world: the calculator plus workers that acknowledge what they
/// are sent, as a real worker's heartbeat would.
struct World {
    calc: Calculator,
    now: Instant,
    /// worker -> (applied version, latest record)
    workers: BTreeMap<String, (u64, Option<AssignmentRecord>)>,
    published: Vec<Publication>,
    cleared: Vec<String>,
    kinds: Vec<RebalanceKind>,
    phases: Vec<Phase>,
    acking: bool,
    /// Workers that keep beating but apply nothing new.
    stalled: BTreeSet<String>,
    /// Workers that beat with the leaving flag.
    leaving: BTreeSet<String>,
    /// Process instances other than `i-<name>` (a restarted process).
    instance_of: BTreeMap<String, String>,
    /// When the workers last beat.
    last_beat: Option<Instant>,
}

impl World {
    fn new(n_parts: usize) -> Self {
        let now = Instant::now();
        World {
            calc: Calculator::new(config(), Arc::new(StickyDeal), "w0", 1, now, parts(n_parts)),
            now,
            workers: BTreeMap::new(),
            published: Vec::new(),
            cleared: Vec::new(),
            kinds: Vec::new(),
            phases: Vec::new(),
            acking: true,
            stalled: BTreeSet::new(),
            leaving: BTreeSet::new(),
            instance_of: BTreeMap::new(),
            last_beat: None,
        }
    }

    /// A group of `names` that has been through its cold start.
    fn started(n_parts: usize, names: &[&str]) -> Self {
        let mut w = World::new(n_parts);
        for n in names {
            w.join(n);
        }
        w.run(MS * 1100);
        w
    }

    /// Every worker's latest record, as a new leader would read them.
    fn records(&self) -> BTreeMap<String, AssignmentRecord> {
        self.workers
            .iter()
            .filter_map(|(n, (_, r))| Some((n.clone(), r.clone()?)))
            .collect()
    }

    fn join(&mut self, w: &str) {
        self.workers.insert(w.to_string(), (0, None));
    }

    fn beat(&mut self, w: &str) {
        let (applied, _) = self.workers[w].clone();
        let instance = (self.instance_of.get(w).cloned()).unwrap_or_else(|| format!("i-{w}"));
        let rec = beat_record(&instance, applied, self.leaving.contains(w));
        self.calc.observe_worker(self.now, w, &rec);
    }

    /// Advances time in 50 ms steps; live workers beat every 100 ms and apply
    /// what they were sent (acknowledged in the next beat).
    fn run(&mut self, for_: Duration) {
        let end = self.now + for_;
        while self.now < end {
            self.now += MS * 50;
            self.beat_all();
            let outs = self.calc.tick(self.now);
            self.apply(outs);
        }
    }

    /// Every live worker applies what it was sent (unless stalled) and
    /// beats.
    fn beat_all(&mut self) {
        self.last_beat = Some(self.now);
        let names: Vec<String> = self.workers.keys().cloned().collect();
        for w in &names {
            if self.acking && !self.stalled.contains(w) {
                let v = self.workers[w].1.as_ref().map_or(0, |r| r.version);
                self.workers.get_mut(w).unwrap().0 = v;
            }
            self.beat(w);
        }
    }

    /// Carries out a tick's outputs as the leader thread would, writing
    /// every publication at once.
    fn apply(&mut self, outs: Vec<Output>) {
        for out in outs {
            match out {
                Output::Publish(p) => {
                    for (w, rec) in &p.records {
                        if let Some(slot) = self.workers.get_mut(w) {
                            slot.1 = Some(rec.clone());
                        }
                    }
                    self.published.push(p);
                }
                Output::Clear(w) => self.cleared.push(w),
                Output::Rebalanced { kind, .. } => self.kinds.push(kind),
                _ => {}
            }
        }
        let phase = self.calc.phase();
        if self.phases.last() != Some(&phase) {
            self.phases.push(phase);
        }
        if let Some(p) = self.published.last() {
            self.calc.confirm_published(p.version);
        }
    }

    /// Current owners of each partition according to the workers' latest
    /// records.
    fn owners(&self) -> BTreeMap<String, Vec<String>> {
        let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (w, (_, rec)) in &self.workers {
            for p in rec.iter().flat_map(|r| r.partitions.iter()) {
                owners.entry(p.id.clone()).or_default().push(w.clone());
            }
        }
        owners
    }

    /// Partition ids in `worker`'s latest record.
    fn held(&self, worker: &str) -> BTreeSet<String> {
        self.workers[worker]
            .1
            .iter()
            .flat_map(|r| r.partitions.iter().map(|p| p.id.clone()))
            .collect()
    }

    /// The last record published to `worker` at a version up to `upto`.
    fn last_record(&self, worker: &str, upto: u64) -> Option<AssignmentRecord> {
        self.published
            .iter()
            .rev()
            .filter(|p| p.version <= upto)
            .flat_map(|p| p.records.iter())
            .find(|(n, _)| n == worker)
            .map(|(_, r)| r.clone())
    }

    fn assert_each_owned_once(&self, n: usize) {
        let owners = self.owners();
        assert_eq!(owners.len(), n, "every partition owned: {owners:?}");
        for (p, ws) in owners {
            assert_eq!(ws.len(), 1, "{p} owned by {ws:?}");
        }
    }
}

/// Three workers with 12 partitions; a3 joins while w1 applies nothing, so
/// the partition w1 must give up to a3 stays in flight.
fn handoff_stuck_on_w1() -> World {
    let mut w = World::started(12, &["w0", "w1", "w2"]);
    w.stalled.insert("w1".into());
    w.join("a3");
    w.run(MS * 1500);
    w
}

/// Fails its first `failures` calls, then deals like [`StickyDeal`].
struct FailsThenWorks {
    failures: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl AssignmentStrategy for FailsThenWorks {
    fn assign(
        &self,
        workers: &[String],
        partitions: &[Partition],
        previous: &Placement,
    ) -> Result<Placement, Error> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n < self.failures {
            return Err(Error::Plugin {
                what: "strategy",
                reason: "not ready".into(),
            });
        }
        StickyDeal.assign(workers, partitions, previous)
    }
}
