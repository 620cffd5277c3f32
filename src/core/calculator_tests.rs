//! Unit tests of the calculator with explicit instants.

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
            let names: Vec<String> = self.workers.keys().cloned().collect();
            for w in &names {
                if self.acking && !self.stalled.contains(w) {
                    let v = self.workers[w].1.as_ref().map_or(0, |r| r.version);
                    self.workers.get_mut(w).unwrap().0 = v;
                }
                self.beat(w);
            }
            for out in self.calc.tick(self.now) {
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

#[test]
fn cold_start_publishes_only_after_the_window() {
    let mut w = World::new(12);
    for n in ["w0", "w1", "w2"] {
        w.join(n);
    }
    w.run(MS * 900);
    assert!(w.published.is_empty());
    assert_eq!(w.calc.phase(), Phase::ColdStart);
    w.run(MS * 200);
    assert_eq!(w.published.len(), 1);
    assert_eq!(w.published[0].reason, RebalanceKind::ColdStart);
    assert_eq!(w.published[0].records.len(), 3);
    w.assert_each_owned_once(12);
    w.run(MS * 300);
    assert_eq!(w.calc.phase(), Phase::Stable);
    assert_eq!(w.published.len(), 1, "a stable group publishes nothing");
}

#[test]
fn join_waits_the_window_then_revokes_before_granting() {
    let mut w = World::new(12);
    w.join("w0");
    w.join("w1");
    w.run(MS * 1100);
    w.join("w2");
    w.run(MS * 200);
    assert_eq!(w.calc.phase(), Phase::Scaling);
    let before = w.published.len();
    w.run(MS * 250);
    assert_eq!(w.published.len(), before, "still inside the planned window");
    w.run(MS * 500);
    assert!(w.phases.contains(&Phase::Rebalancing));
    assert_eq!(w.calc.phase(), Phase::Stable);
    let rounds = &w.published[before..];
    assert!(
        rounds.len() >= 2,
        "revocation and grant are separate rounds"
    );
    // The first round gives w2 nothing it must wait for.
    let first_w2 = rounds[0].records.iter().find(|(n, _)| n == "w2").unwrap();
    assert!(first_w2.1.partitions.is_empty());
    assert_eq!(rounds[0].reason, RebalanceKind::PlannedScale);
    assert_eq!(rounds.last().unwrap().reason, RebalanceKind::Handoff);
    w.assert_each_owned_once(12);
    assert_eq!(w.owners().values().filter(|o| o[0] == "w2").count(), 4);
}

#[test]
fn no_partition_is_granted_while_its_old_owner_has_not_acknowledged() {
    let mut w = World::new(6);
    w.join("w0");
    w.join("w1");
    w.run(MS * 1100);
    w.acking = false;
    w.join("w2");
    w.run(MS * 1500);
    let w2 = w.workers["w2"].1.clone().unwrap();
    assert!(w2.partitions.is_empty(), "nothing granted without acks");
    assert_eq!(w.calc.phase(), Phase::Rebalancing);
    w.acking = true;
    w.run(MS * 300);
    assert_eq!(w.calc.phase(), Phase::Stable);
    w.assert_each_owned_once(6);
}

#[test]
fn a_dead_worker_triggers_an_emergency_after_ttl_plus_grace() {
    let mut w = World::started(9, &["w0", "w1", "w2"]);
    let before = w.published.len();
    w.workers.remove("w2");
    let died_at = w.now;
    w.run(MS * 350);
    assert_eq!(w.published.len(), before, "not dead before ttl + grace");
    w.run(MS * 200);
    assert!(w.now - died_at <= MS * 600);
    assert_eq!(w.kinds.last(), Some(&RebalanceKind::Emergency));
    assert!(w.phases.contains(&Phase::Emergency));
    assert_eq!(w.cleared, vec!["w2".to_string()]);
    w.assert_each_owned_once(9);
    assert_eq!(w.calc.phase(), Phase::Stable);
}

#[test]
fn a_zone_loss_is_an_emergency_whatever_fraction_died() {
    let mut w = World::started(20, &["w0", "w1", "w2", "w3", "w4"]);
    let lost = ["w1", "w2", "w3", "w4"];
    let kept = w.held("w0");
    for n in lost {
        w.workers.remove(n);
    }
    let died_at = w.now;
    w.run(MS * 550);
    assert_eq!(
        w.kinds.last(),
        Some(&RebalanceKind::Emergency),
        "{:?}",
        w.kinds
    );
    assert!(!w.kinds.contains(&RebalanceKind::Restart));
    w.assert_each_owned_once(20);
    assert!(
        w.held("w0").is_superset(&kept),
        "the survivor keeps its own"
    );
    assert!(w.now - died_at <= MS * 550);
    // The lost workers come back under their IDs: one planned rebalance
    // gives each what it had.
    let kinds = w.kinds.len();
    for n in lost {
        w.join(n);
    }
    w.run(MS * 2000);
    assert_eq!(
        w.kinds[kinds..],
        [RebalanceKind::PlannedScale],
        "one planned rebalance"
    );
    w.assert_each_owned_once(20);
    assert_eq!(w.held("w0"), kept, "each back on what its ID held");
}

#[test]
fn a_zone_loss_with_the_leader_among_the_dead_is_an_emergency_for_its_successor() {
    let names = ["w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9"];
    let mut w = World::started(30, &names);
    let records = w.records();
    let survivors = ["w6", "w7", "w8", "w9"];
    let held: BTreeMap<&str, BTreeSet<String>> =
        survivors.iter().map(|n| (*n, w.held(n))).collect();
    // w0 (the leader) and w1..w5 are killed; w9 takes office. Its replay
    // still shows the dead workers' last heartbeats.
    for n in &names[..6] {
        w.workers.remove(*n);
    }
    let mut next = Calculator::new(config(), Arc::new(StickyDeal), "w9", 9, w.now, parts(30));
    for n in names {
        next.observe_worker(w.now, n, &beat_record(&format!("i-{n}"), 1, false));
    }
    next.adopt(w.now, &records, w.calc.version());
    w.calc = next;
    w.kinds.clear();
    w.run(MS * 550);
    assert_eq!(w.kinds, vec![RebalanceKind::Emergency]);
    w.assert_each_owned_once(30);
    for (n, before) in held {
        assert!(w.held(n).is_superset(&before), "{n} kept its own");
    }
}

#[test]
fn a_fleet_restart_under_the_same_ids_is_one_cold_start_back_on_the_ids() {
    let names = ["w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9"];
    let mut w = World::started(40, &names);
    let records = w.records();
    let held: BTreeMap<&str, BTreeSet<String>> = names.iter().map(|n| (*n, w.held(n))).collect();
    // Every process is killed. New processes come back under the same IDs,
    // a few at a time; the first one back takes office while the replay
    // still shows the old processes' last heartbeats.
    w.workers.clear();
    let mut next = Calculator::new(config(), Arc::new(StickyDeal), "w0", 9, w.now, parts(40));
    for n in names {
        next.observe_worker(w.now, n, &beat_record(&format!("i-{n}"), 1, false));
    }
    next.adopt(w.now, &records, w.calc.version());
    w.calc = next;
    w.kinds.clear();
    for (i, n) in names.iter().enumerate() {
        // A new instance under the old ID.
        w.workers.insert(n.to_string(), (0, None));
        w.instance_of.insert(n.to_string(), format!("new-{n}"));
        // Three at once, then three more 500 ms later (after the old
        // processes' death verdict at 450 ms), the last four after 1 s.
        if i == 2 || i == 5 {
            w.run(MS * 500);
        }
    }
    w.run(MS * 3000);
    assert_eq!(w.kinds, vec![RebalanceKind::Restart], "one cold start");
    w.assert_each_owned_once(40);
    let back = names
        .iter()
        .map(|n| w.held(n).intersection(&held[n]).count())
        .sum::<usize>();
    assert!(back * 100 >= 40 * 95, "{back} of 40 back on their IDs");
}

#[test]
fn leaving_worker_is_drained_at_once() {
    let mut w = World::started(6, &["w0", "w1", "w2"]);
    let rec = beat_record("i-w2", w.workers["w2"].0, true);
    w.calc.observe_worker(w.now, "w2", &rec);
    let outs = w.calc.tick(w.now);
    let published = outs.iter().find_map(|o| match o {
        Output::Publish(p) => Some(p),
        _ => None,
    });
    let p = published.expect("published at once");
    let w2 = p.records.iter().find(|(n, _)| n == "w2").unwrap();
    assert!(w2.1.partitions.is_empty());
}

#[test]
fn a_new_leader_adopts_without_reshuffling_and_continues_versions() {
    let mut w = World::started(10, &["w0", "w1", "w2"]);
    let owners = w.owners();
    let records = w.records();
    let last = w.calc.version();
    let mut next = Calculator::new(config(), Arc::new(StickyDeal), "w1", 9, w.now, parts(10));
    next.adopt(w.now, &records, last);
    w.calc = next;
    let before = w.published.len();
    w.run(MS * 1000);
    assert_eq!(w.published.len(), before, "nothing to publish");
    assert_eq!(w.owners(), owners);
    // A join after the takeover publishes a higher version.
    w.join("w3");
    w.run(MS * 1500);
    assert!(w.published[before].version > last);
    let versions: BTreeSet<u64> = w.published.iter().map(|p| p.version).collect();
    assert_eq!(versions.len(), w.published.len(), "versions never repeat");
}

#[test]
fn a_new_leader_facing_a_restarted_fleet_waits_one_cold_start() {
    let mut w = World::started(8, &["w0", "w1", "w2", "w3"]);
    let records = w.records();
    // The whole fleet is killed; new processes with new ids appear and one
    // of them takes office, finding the old assignment.
    w.workers.clear();
    for n in ["w4", "w5", "w6", "w7"] {
        w.join(n);
    }
    let mut next = Calculator::new(config(), Arc::new(StickyDeal), "w4", 9, w.now, parts(8));
    // The replay still shows the old workers' keys.
    for n in ["w0", "w1", "w2", "w3"] {
        next.observe_worker(w.now, n, &beat_record(&format!("i-{n}"), 1, false));
    }
    next.adopt(w.now, &records, 1);
    w.calc = next;
    w.kinds.clear();
    w.run(MS * 3000);
    assert_eq!(w.kinds, vec![RebalanceKind::Restart]);
    w.assert_each_owned_once(8);
}

#[test]
fn a_blind_leader_declares_nobody_dead() {
    let mut w = World::started(6, &["w0", "w1", "w2"]);
    let kinds = w.kinds.len();
    // The leader hears nothing at all for longer than ttl + grace ...
    let saved = std::mem::take(&mut w.workers);
    w.run(MS * 1000);
    assert_eq!(w.kinds.len(), kinds, "no verdict while blind");
    // ... then hears everyone again: nobody was dead.
    w.workers = saved;
    w.run(MS * 1000);
    assert_eq!(w.kinds.len(), kinds, "{:?}", w.kinds);
    w.assert_each_owned_once(6);
}

#[test]
fn a_worker_restarted_under_its_id_after_a_leader_change_gets_a_key() {
    let t0 = Instant::now();
    let rec = |instance: &str, applied: u64| beat_record(instance, applied, false);
    let assigned = |instance: &str, ids: &[&str]| AssignmentRecord {
        version: 5,
        epoch: 1,
        reason: RebalanceKind::PlannedScale,
        instance: instance.into(),
        incarnation: 0,
        incoming: Vec::new(),
        partitions: ids
            .iter()
            .map(|id| crate::wire::OwnedPartition {
                id: id.to_string(),
                weight: 1,
                token: 1,
            })
            .collect(),
    };
    let mut c = Calculator::new(config(), Arc::new(StickyDeal), "w3", 9, t0, parts(4));
    for w in ["w0", "w2", "w3"] {
        c.observe_worker(t0, w, &rec(&format!("old-{w}"), 5));
    }
    let records: BTreeMap<String, AssignmentRecord> = [
        ("w0".to_string(), assigned("old-w0", &["p00", "p01"])),
        ("w1".to_string(), assigned("old-w1", &[])),
        ("w2".to_string(), assigned("old-w2", &["p02"])),
        ("w3".to_string(), assigned("old-w3", &["p03"])),
    ]
    .into();
    c.adopt(t0, &records, 5);
    let mut t = t0;
    let mut w1_written = false;
    let mut w1_busy = false;
    for _ in 0..80 {
        t += MS * 50;
        let v = c.version();
        for w in ["w0", "w2", "w3"] {
            c.observe_worker(t, w, &rec(&format!("old-{w}"), v));
        }
        c.observe_worker(t, "w1", &rec("new-w1", v));
        for out in c.tick(t) {
            if let Output::Publish(p) = out {
                w1_written |= p
                    .records
                    .iter()
                    .any(|(w, r)| w == "w1" && r.instance == "new-w1");
                w1_busy |= p
                    .records
                    .iter()
                    .any(|(w, r)| w == "w1" && !r.partitions.is_empty());
                c.confirm_published(p.version);
            }
        }
    }
    assert!(w1_written, "the restarted w1 got a key");
    assert!(w1_busy, "and, after a planned window, work");
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

#[test]
fn a_rebalance_during_a_handoff_keeps_moves_in_flight_on_their_way() {
    let mut w = handoff_stuck_on_w1();
    let w1_then: BTreeSet<String> = w
        .last_record("w1", w.workers["w1"].0)
        .map(|r| r.partitions.iter().map(|p| p.id.clone()).collect())
        .unwrap_or_default();
    let in_flight: Vec<String> = w1_then.difference(&w.held("w1")).cloned().collect();
    assert_eq!(in_flight.len(), 1, "one partition on its way from w1");
    assert!(!w.held("a3").contains(&in_flight[0]), "not granted yet");
    // Another worker leaves before the handoff completes.
    let rec = beat_record("i-w2", w.workers["w2"].0, true);
    w.calc.observe_worker(w.now, "w2", &rec);
    w.workers.remove("w2");
    w.run(MS * 200);
    w.stalled.clear();
    w.run(MS * 1000);
    w.assert_each_owned_once(12);
    assert!(
        w.held("a3").contains(&in_flight[0]),
        "the partition in flight reached the worker it was sent to: {:?}",
        w.owners()
    );
}

#[test]
fn a_new_leader_finishes_the_handoffs_its_predecessor_had_under_way() {
    let mut w = handoff_stuck_on_w1();
    let meta = w.published.last().expect("published").meta.clone();
    let moving = meta.moving.get("a3").cloned().unwrap_or_default();
    assert_eq!(moving.len(), 1, "the summary names the move: {:?}", meta);
    let records = w.records();
    let mut next = Calculator::new(config(), Arc::new(StickyDeal), "w0", 9, w.now, parts(12));
    next.adopt(w.now, &records, meta.version);
    next.adopt_meta(w.now, &meta);
    w.calc = next;
    let adopted_at = w.published.len();
    w.run(MS * 300);
    w.stalled.clear();
    w.run(MS * 1000);
    w.assert_each_owned_once(12);
    assert_eq!(w.owners()[&moving[0]], vec!["a3".to_string()]);
    let granted_by = w.published[adopted_at..]
        .iter()
        .find(|p| {
            p.records
                .iter()
                .any(|(n, r)| n == "a3" && r.partitions.iter().any(|q| q.id == moving[0]))
        })
        .map(|p| p.meta.epoch);
    assert_eq!(granted_by, Some(9), "the new leader made the grant");
}

#[test]
fn a_worker_back_under_its_id_after_a_leader_change_gets_its_partitions_back() {
    let mut w = World::started(12, &["w0", "w1", "w2", "w3"]);
    let original = w.held("w3");
    // w3 leaves gracefully and is drained; its key stays behind, empty.
    let rec = beat_record("i-w3", w.workers["w3"].0, true);
    w.calc.observe_worker(w.now, "w3", &rec);
    w.workers.remove("w3");
    w.run(MS * 300);
    let mut records = w.records();
    let last = w.published.last().expect("published");
    let drained = w.last_record("w3", u64::MAX).expect("w3 was written");
    assert!(drained.partitions.is_empty());
    records.insert("w3".into(), drained);
    let meta = last.meta.clone();
    assert!(meta.departed.contains_key("w3"), "{meta:?}");
    // The leader changes, then w3 comes back under the same ID.
    let mut next = Calculator::new(config(), Arc::new(StickyDeal), "w1", 9, w.now, parts(12));
    next.adopt(w.now, &records, meta.version);
    next.adopt_meta(w.now, &meta);
    w.calc = next;
    w.join("w3");
    w.run(MS * 2000);
    w.assert_each_owned_once(12);
    assert_eq!(w.held("w3"), original);
}

#[test]
fn a_new_leader_forgets_a_drained_worker_it_never_heard_from() {
    let mut w = World::started(12, &["w0", "w1", "w2", "w3"]);
    // w0 drains and leaves ...
    w.leaving.insert("w0".into());
    w.run(MS * 300);
    w.workers.remove("w0");
    let top = w.calc.version();
    let drained = w.last_record("w0", top).expect("w0 was written");
    assert!(drained.partitions.is_empty());
    // ... and the old leader stops before w3's grant is written, so a
    // partition is owned by nobody when the next leader takes office.
    let granted_at = w
        .published
        .iter()
        .rev()
        .find(|p| p.records.iter().any(|(n, _)| n == "w3"))
        .map(|p| p.version)
        .expect("w3 was written");
    let mut records: BTreeMap<String, AssignmentRecord> = ["w1", "w2"]
        .iter()
        .map(|n| (n.to_string(), w.last_record(n, top).expect("written")))
        .collect();
    let older = w
        .last_record("w3", granted_at - 1)
        .expect("w3 written before");
    assert!(older.partitions.len() < 4, "the grant is what goes missing");
    records.insert("w3".into(), older.clone());
    records.insert("w0".into(), drained);
    w.workers.get_mut("w3").unwrap().1 = Some(older);
    let mut next = Calculator::new(config(), Arc::new(StickyDeal), "w1", 9, w.now, parts(12));
    for n in ["w1", "w2", "w3"] {
        next.observe_worker(w.now, n, &beat_record(&format!("i-{n}"), top, false));
    }
    next.adopt(w.now, &records, top);
    next.forget_unheard();
    w.calc = next;
    let adopted_at = w.published.len();
    // Well before w0's death verdict (ttl + grace = 400 ms).
    w.run(MS * 250);
    w.assert_each_owned_once(12);
    let to_w0: Vec<usize> = w.published[adopted_at..]
        .iter()
        .flat_map(|p| p.records.iter())
        .filter(|(n, _)| n == "w0")
        .map(|(_, r)| r.partitions.len())
        .collect();
    assert!(to_w0.iter().all(|n| *n == 0), "work sent to w0: {to_w0:?}");
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

#[test]
fn a_failing_strategy_backs_off_reports_once_and_recovers() {
    let strategy = Arc::new(FailsThenWorks {
        failures: 4,
        calls: Default::default(),
    });
    let t0 = Instant::now();
    let mut c = Calculator::new(config(), strategy.clone(), "w0", 1, t0, parts(6));
    let mut reports = 0;
    let mut published_at = None;
    let mut t = t0;
    // 100 ms heartbeats, 10 ms ticks: without backoff the strategy would be
    // asked at every tick once the cold-start window closed.
    while t < t0 + MS * 4000 {
        t += MS * 10;
        c.observe_worker(t, "w0", &beat_record("i-w0", c.version(), false));
        for out in c.tick(t) {
            match out {
                Output::Report(e) => {
                    assert!(e.to_string().contains("not ready"), "{e}");
                    reports += 1;
                }
                Output::Publish(p) => {
                    published_at.get_or_insert(t);
                    c.confirm_published(p.version);
                }
                Output::Resign => panic!("an error is not a panic"),
                _ => {}
            }
        }
    }
    let calls = strategy.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(reports, 1, "one report for one distinct error");
    assert_eq!(calls, 5, "four failures, then the call that worked");
    // Retries after 100, 200, 400 and 800 ms: the fifth call comes 1.5 s
    // after the window closed at 1 s.
    let published_at = published_at.expect("recovered by itself") - t0;
    assert!(
        published_at >= MS * 2500 && published_at <= MS * 2600,
        "{published_at:?}"
    );
}

#[test]
fn a_drained_worker_is_emptied_at_once_and_undrained_takes_work_again() {
    let mut w = World::started(12, &["w0", "w1", "w2"]);
    w.assert_each_owned_once(12);
    w.calc.set_drained(["w1".to_string()].into());
    w.run(MS * 50);
    assert!(w.held("w1").is_empty(), "revoked in the next tick");
    w.run(MS * 400);
    assert!(w.held("w1").is_empty(), "no window brings it back");
    assert_eq!(w.owners().len(), 12, "the others were granted its work");
    w.assert_each_owned_once(12);
    w.calc.set_drained(BTreeSet::new());
    w.run(MS * 300);
    assert!(!w.held("w1").is_empty(), "undrained, it gets work again");
    w.assert_each_owned_once(12);
}

#[test]
fn a_rebalance_request_places_a_joiner_without_waiting_its_window() {
    let mut w = World::started(12, &["w0", "w1"]);
    w.join("w2");
    w.run(MS * 100);
    assert!(w.held("w2").is_empty(), "the window holds it back");
    w.calc.request_rebalance();
    w.run(MS * 200);
    assert!(!w.held("w2").is_empty(), "placed at once on request");
    w.assert_each_owned_once(12);
}

#[test]
fn a_planned_move_is_announced_to_its_future_owner_with_the_revoke_and_an_emergency_never() {
    let mut w = World::started(12, &["w0", "w1"]);
    let before = w.published.len();
    w.join("w2");
    w.run(MS * 3000);
    let incoming = |p: &Publication, worker: &str| -> BTreeSet<String> {
        p.records
            .iter()
            .filter(|(n, _)| n == worker)
            .flat_map(|(_, r)| r.incoming.iter().cloned())
            .collect()
    };
    let new = &w.published[before..];
    let told_at = new
        .iter()
        .position(|p| !incoming(p, "w2").is_empty())
        .expect("w2 is told what is coming");
    let told = incoming(&new[told_at], "w2");
    // Told in the publication that revokes them from their owners, so the
    // owners still hold them (their release is not acknowledged yet).
    for (n, r) in &new[told_at].records {
        if n != "w2" {
            assert!(r.partitions.iter().all(|p| !told.contains(&p.id)));
        }
    }
    assert!(w.held("w2").len() >= told.len(), "w2 is granted them later");
    for id in &told {
        assert!(w.held("w2").contains(id), "{id} reached w2");
        let granted = new
            .iter()
            .position(|p| {
                p.records
                    .iter()
                    .any(|(n, r)| n == "w2" && r.partitions.iter().any(|q| &q.id == id))
            })
            .expect("granted");
        assert!(granted > told_at, "{id} announced before its grant");
    }
    assert!(
        w.records()["w2"].incoming.is_empty(),
        "nothing is on its way any more"
    );

    // w2 dies: its partitions are granted at once, announced to nobody.
    let before = w.published.len();
    w.workers.remove("w2");
    w.run(MS * 2000);
    assert!(w.kinds.contains(&RebalanceKind::Emergency));
    for p in &w.published[before..] {
        assert!(
            p.records.iter().all(|(_, r)| r.incoming.is_empty()),
            "an emergency announces nothing: {p:?}"
        );
    }
    w.assert_each_owned_once(12);
}
