//! A new leader adopting a previous leader's records and summary.

use super::*;

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
    // What each worker was sent, so what it applies (a worker never
    // reports a version it was not sent: that would mean the store lost it).
    let mut sent: BTreeMap<String, u64> = ["w0", "w2", "w3"]
        .iter()
        .map(|w| (w.to_string(), 5))
        .collect();
    for _ in 0..80 {
        t += MS * 50;
        let applied = |w: &str| sent.get(w).copied().unwrap_or(0);
        for w in ["w0", "w2", "w3"] {
            c.observe_worker(t, w, &rec(&format!("old-{w}"), applied(w)));
        }
        c.observe_worker(t, "w1", &rec("new-w1", applied("w1")));
        for out in c.tick(t) {
            if let Output::Publish(p) = out {
                for (w, _) in &p.records {
                    sent.insert(w.clone(), p.version);
                }
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
    // w3 applied only what it was sent (the store lost nothing).
    let w3_applied = older.version;
    w.workers.get_mut("w3").unwrap().1 = Some(older);
    let mut next = Calculator::new(config(), Arc::new(StickyDeal), "w1", 9, w.now, parts(12));
    for n in ["w1", "w2", "w3"] {
        let applied = if n == "w3" { w3_applied } else { top };
        next.observe_worker(w.now, n, &beat_record(&format!("i-{n}"), applied, false));
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

#[test]
fn a_new_leader_numbers_on_above_a_version_a_worker_was_told_but_the_store_lost() {
    let mut w = World::started(10, &["w0", "w1", "w2"]);
    let records = w.records();
    let last = w.calc.version();
    // A leader the store forgot told w1 about version last + 5, and w1's
    // callback for it is still running: it applied only `last`.
    let told = WorkerRecord {
        told: last + 5,
        ..beat_record("i-w1", last, false)
    };
    let mut next = Calculator::new(config(), Arc::new(StickyDeal), "w1", 9, w.now, parts(10));
    next.observe_worker(w.now, "w1", &told);
    next.adopt(w.now, &records, last);
    w.calc = next;
    let before = w.published.len();
    w.join("w3");
    w.run(MS * 2500);
    assert!(w.published.len() > before, "the join is published");
    assert!(
        w.published[before].version > last + 5,
        "v{} is not above the v{} w1 was told of",
        w.published[before].version,
        last + 5
    );
}

#[test]
fn an_adopted_record_its_worker_never_sees_is_written_again_after_the_handoff_timeout() {
    let mut w = World::started(6, &["w0", "w1", "w2", "w3"]);
    let records = w.records();
    // The victim holds its whole share after w0's death (2 of 6 over 3),
    // so no rebalance writes its key for a reason of its own.
    let victim = ["w1", "w2", "w3"]
        .into_iter()
        .find(|n| records[*n].partitions.len() == 2)
        .expect("a worker holding two partitions")
        .to_string();
    let v = records[&victim].version;
    // A third party overwrote the victim's key after the old leader wrote
    // it: it has nothing readable, and its heartbeats never acknowledge `v`.
    w.workers.insert(victim.clone(), (v - 1, None));
    w.stalled.insert(victim.clone());
    let mut next = Calculator::new(config(), Arc::new(StickyDeal), "w3", 9, w.now, parts(6));
    next.adopt(w.now, &records, v);
    w.calc = next;
    let before = w.published.len();
    // w0 dies: its partitions must move, but the victim may hold anything
    // until it acknowledges a version this leader wrote.
    w.workers.remove("w0");
    w.run(MS * 1500);
    assert!(
        w.owners().len() < 6,
        "nothing can be granted while {victim} has not acknowledged: {:?}",
        w.owners()
    );
    // Its key written again, it sees and acknowledges a version.
    w.stalled.remove(&victim);
    w.run(config().handoff_timeout);
    let retold = w.published[before..]
        .iter()
        .any(|p| p.version > v && p.records.iter().any(|(n, _)| *n == victim));
    assert!(retold, "{victim}'s key was written again");
    w.run(MS * 1500);
    w.assert_each_owned_once(6);
}

#[test]
fn a_new_leader_that_finds_the_store_forgot_grants_nothing_for_a_heartbeat_ttl() {
    let mut w = World::started(9, &["w0", "w1", "w2"]);
    let mut records = w.records();
    // The store lost w2's heartbeat and record: w2 is alive, holding these,
    // and will heartbeat again within a TTL (or fence itself).
    let lost: BTreeSet<String> = records
        .remove("w2")
        .map(|r| r.partitions.into_iter().map(|p| p.id).collect())
        .unwrap_or_default();
    assert!(!lost.is_empty());
    let last = w.calc.version();
    w.workers.remove("w2");
    let mut next = Calculator::new(config(), Arc::new(StickyDeal), "w1", 9, w.now, parts(9));
    // w0 reports a version the store has no record of: the store forgot.
    let told = WorkerRecord {
        told: last + 3,
        ..beat_record("i-w0", last, false)
    };
    next.observe_worker(w.now, "w0", &told);
    next.adopt(w.now, &records, last);
    w.calc = next;
    let before = w.published.len();
    let granted_lost = |w: &World, from: usize| {
        w.published[from..]
            .iter()
            .flat_map(|p| p.records.iter())
            .flat_map(|(_, r)| r.partitions.iter())
            .any(|p| lost.contains(&p.id))
    };
    // Just short of the TTL (300 ms): nothing w2 held is granted.
    w.run(MS * 250);
    assert!(!granted_lost(&w, before), "granted before a TTL passed");
    // Then w2 stays silent (it fenced itself): its partitions move.
    w.run(MS * 1500);
    assert!(granted_lost(&w, before));
    w.assert_each_owned_once(9);
}

#[test]
fn a_suspect_worker_handed_a_higher_version_since_is_numbered_above_it() {
    let mut w = World::started(10, &["w0", "w1", "w2"]);
    let records = w.records();
    let last = w.calc.version();
    // The store lost what w1 was told (last + 2): it is suspect ...
    let suspect = WorkerRecord {
        told: last + 2,
        ..beat_record("i-w1", last, false)
    };
    let mut next = Calculator::new(config(), Arc::new(StickyDeal), "w1", 9, w.now, parts(10));
    next.observe_worker(w.now, "w1", &suspect);
    next.adopt(w.now, &records, last);
    // ... and a deposed leader's late write hands it last + 7 afterwards.
    let later = WorkerRecord {
        told: last + 7,
        ..beat_record("i-w1", last, false)
    };
    next.observe_worker(w.now, "w1", &later);
    w.calc = next;
    let before = w.published.len();
    w.join("w3");
    w.run(MS * 2500);
    assert!(w.published.len() > before, "the join is published");
    let first = w.published[before].version;
    assert!(
        first > last + 7,
        "v{first} is not above the v{} w1 was handed",
        last + 7
    );
}
