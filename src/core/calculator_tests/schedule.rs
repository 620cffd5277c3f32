//! Windows: cold start, planned joins, operator requests.

use super::*;

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
