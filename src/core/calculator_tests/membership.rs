//! Liveness: death verdicts, zone losses, fleet restarts, leaving and a
//! blind leader.

use super::*;

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
