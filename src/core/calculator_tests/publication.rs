//! Placement and publication: revoke before grant, handoffs in flight,
//! a failing strategy, drains, announcements of what is coming.

use super::*;

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

#[test]
fn a_grant_its_worker_never_sees_is_written_again_after_the_handoff_timeout() {
    let mut w = World::started(6, &["w0", "w1"]);
    // w2 joins and heartbeats, but never sees its record (the store lost
    // the write, or dropped the bucket after it): it reports no version.
    w.join("w2");
    w.stalled.insert("w2".into());
    w.run(MS * 1500);
    let granted = w.last_record("w2", u64::MAX).expect("w2 was written");
    assert!(!granted.partitions.is_empty(), "w2 was granted work");
    // Nothing else changes for w2 now; its wait started at its first
    // record, under a handoff timeout ago.
    let before = w.published.len();
    w.run(config().handoff_timeout);
    let again: Vec<u64> = (w.published[before..].iter())
        .filter(|p| p.records.iter().any(|(n, _)| n == "w2"))
        .map(|p| p.version)
        .collect();
    assert!(
        again.iter().any(|v| *v > granted.version),
        "w2's key is written again: {again:?}"
    );
    // Once it sees its record, every partition has its one owner.
    w.stalled.remove("w2");
    w.run(MS * 500);
    w.assert_each_owned_once(6);
    assert!(!w.held("w2").is_empty());
}
