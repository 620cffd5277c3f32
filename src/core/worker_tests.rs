//! Unit tests of `worker.rs`.

use super::*;
use crate::wire::OwnedPartition;
use crate::RebalanceKind;

const I: Duration = Duration::from_millis(100);

fn core(now: Instant) -> WorkerCore {
    WorkerCore::new("inst", 1, now, I, I * 3, false)
}

fn record(version: u64, epoch: u64, incarnation: u32, ids: &[&str]) -> AssignmentRecord {
    AssignmentRecord {
        version,
        epoch,
        reason: RebalanceKind::ColdStart,
        instance: "inst".into(),
        incarnation,
        incoming: Vec::new(),
        partitions: ids
            .iter()
            .map(|id| OwnedPartition {
                id: id.to_string(),
                weight: 1,
                token: version,
            })
            .collect(),
    }
}

#[test]
fn a_record_that_only_announces_incoming_partitions_is_a_prepare() {
    let t = Instant::now();
    let mut c = core(t);
    let first = record(1, 1, 0, &["p1"]);
    assert!(matches!(
        c.on_assignment(Some(&first)),
        Some(WorkerEvent::Apply(_))
    ));
    let news = AssignmentRecord {
        version: 2,
        incoming: vec!["p2".into()],
        ..first.clone()
    };
    match c.on_assignment(Some(&news)) {
        Some(WorkerEvent::Prepare {
            version: 2,
            partitions,
        }) => assert_eq!(partitions, vec![Partition::new("p2")]),
        other => panic!("expected a prepare, got {other:?}"),
    }
    // The grant: an Apply, with nothing new to prepare.
    let mut grant = record(3, 1, 0, &["p1", "p2"]);
    grant.partitions[0].token = 1;
    assert!(matches!(
        c.on_assignment(Some(&grant)),
        Some(WorkerEvent::Apply(_))
    ));
    assert!(c.take_incoming().is_empty());
    // A first record is installed even when it brings news, and the news
    // is kept for on_prepare.
    let mut fresh = core(t);
    let r = AssignmentRecord {
        incoming: vec!["p9".into()],
        ..record(1, 1, 0, &[])
    };
    assert!(matches!(
        fresh.on_assignment(Some(&r)),
        Some(WorkerEvent::Apply(_))
    ));
    assert_eq!(fresh.take_incoming(), vec![Partition::new("p9")]);
}

#[test]
fn applies_only_newer_assignments_addressed_to_it() {
    let mut w = core(Instant::now());
    assert!(matches!(
        w.on_assignment(Some(&record(2, 1, 0, &["a"]))),
        Some(WorkerEvent::Apply(_))
    ));
    assert_eq!(
        w.on_assignment(Some(&record(2, 1, 0, &["b"]))),
        None,
        "same version"
    );
    assert_eq!(
        w.on_assignment(Some(&record(1, 1, 0, &["b"]))),
        None,
        "older"
    );
    assert_eq!(
        w.on_assignment(Some(&record(3, 0, 0, &["b"]))),
        None,
        "older epoch"
    );
    assert_eq!(
        w.on_assignment(Some(&record(3, 1, 7, &["b"]))),
        None,
        "other incarnation"
    );
    let mut other = record(3, 1, 0, &["b"]);
    other.instance = "someone-else".into();
    assert_eq!(w.on_assignment(Some(&other)), None, "other process");
    assert_eq!(
        w.on_assignment(Some(&record(1, 2, 0, &["c"]))),
        None,
        "a lower version under a newer epoch: kept from before the store forgot"
    );
    assert_eq!(
        w.on_assignment(Some(&record(2, 2, 0, &["c"]))),
        None,
        "the same version with other partitions under a newer epoch"
    );
    assert!(
        matches!(
            w.on_assignment(Some(&record(4, 2, 0, &["c"]))),
            Some(WorkerEvent::Apply(_))
        ),
        "newer epoch and version"
    );
    assert!(w.current().contains("c"));
}

#[test]
fn nothing_addressed_to_a_fenced_incarnation_is_ever_applied() {
    let t0 = Instant::now();
    let mut w = core(t0);
    w.on_assignment(Some(&record(2, 1, 0, &["a"])));
    let t1 = t0 + I * 3;
    assert!(matches!(w.tick(t1), Some(WorkerEvent::Fenced(_))));
    w.resume(t1);
    assert_eq!(w.record().incarnation, 1);
    // The leader saw a heartbeat of the fenced incarnation that we never
    // heard back about, and grants it work.
    assert_eq!(w.on_assignment(Some(&record(3, 1, 1, &["b"]))), None);
    assert!(w.current().is_empty());
    w.poll(t1).expect("a heartbeat is due");
    assert_eq!(
        w.on_beat(t1, t1, BeatOutcome::Written(9)),
        Some(WorkerEvent::Recovered)
    );
    assert_eq!(w.record().incarnation, 2, "recovery starts afresh");
    assert_eq!(
        w.on_assignment(Some(&record(4, 1, 1, &["b"]))),
        None,
        "still addressed to the fenced incarnation"
    );
    assert!(matches!(
        w.on_assignment(Some(&record(5, 1, 2, &["b"]))),
        Some(WorkerEvent::Apply(a)) if a.contains("b")
    ));
}

#[test]
fn records_of_a_leader_older_than_the_lease_are_ignored() {
    let mut w = core(Instant::now());
    w.observe_lease_epoch(5);
    assert_eq!(w.on_assignment(Some(&record(9, 4, 0, &["a"]))), None);
    assert!(matches!(
        w.on_assignment(Some(&record(9, 5, 0, &["a"]))),
        Some(WorkerEvent::Apply(_))
    ));
    w.observe_lease_epoch(3);
    assert_eq!(
        w.on_assignment(Some(&record(10, 4, 0, &["b"]))),
        None,
        "the minimum never goes down"
    );
}

#[test]
fn a_new_leaders_restamp_changes_the_epoch_and_nothing_else() {
    let mut w = core(Instant::now());
    w.on_assignment(Some(&record(4, 1, 0, &["a", "b"])));
    assert_eq!(w.on_assignment(Some(&record(4, 2, 0, &["a", "b"]))), None);
    assert_eq!(w.current().epoch(), 2);
    assert_eq!(
        w.on_assignment(Some(&record(4, 1, 0, &["a"]))),
        None,
        "the old leader's epoch is behind now"
    );
    assert_eq!(
        w.on_assignment(Some(&record(4, 3, 0, &["a"]))),
        None,
        "the same version with other partitions is not news"
    );
    assert!(matches!(
        w.on_assignment(Some(&record(5, 3, 0, &["a"]))),
        Some(WorkerEvent::Apply(_))
    ));
}

#[test]
fn fences_itself_before_the_ttl_and_ignores_its_old_assignment() {
    let t0 = Instant::now();
    let mut w = core(t0);
    w.on_assignment(Some(&record(2, 1, 0, &["a"])));
    let act = w.poll(t0).unwrap();
    assert!(matches!(act, BeatAction::Update { .. }));
    w.on_beat(t0, t0, BeatOutcome::Written(2));
    assert_eq!(w.tick(t0 + I * 2), None);
    // Beats fail from now on.
    let ev = w.tick(t0 + I * 3).unwrap();
    match ev {
        WorkerEvent::Fenced(a) => assert!(a.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(w.is_degraded());
    // The key still says "a" for incarnation 0: not applied again.
    assert_eq!(w.on_assignment(Some(&record(3, 1, 0, &["a"]))), None);
    // No beat announces the new incarnation before the release returned,
    // and nothing is due meanwhile (the shell must not spin).
    let t = t0 + I * 4;
    assert_eq!(w.poll(t), None);
    assert!(w.next_deadline().is_none_or(|d| d > t + I * 100));
    w.resume(t);
    // A beat gets through: recovered, new incarnation announced.
    let act = w.poll(t).unwrap();
    match &act {
        BeatAction::Update { record, .. } => assert_eq!(record.incarnation, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        w.on_beat(t, t, BeatOutcome::Written(3)),
        Some(WorkerEvent::Recovered)
    );
    // Work comes to the incarnation that follows the recovery.
    assert!(matches!(
        w.on_assignment(Some(&record(4, 1, 2, &["a"]))),
        Some(WorkerEvent::Apply(_))
    ));
}

#[test]
fn keep_mode_degrades_without_releasing() {
    let t0 = Instant::now();
    let mut w = WorkerCore::new("inst", 1, t0, I, I * 3, true);
    w.on_assignment(Some(&record(2, 1, 0, &["a"])));
    assert_eq!(w.tick(t0 + I * 3), Some(WorkerEvent::Degraded));
    assert!(w.current().contains("a"));
}

#[test]
fn conflict_then_read_decides() {
    let t0 = Instant::now();
    let mut w = core(t0);
    let _ = w.poll(t0);
    w.on_beat(t0, t0, BeatOutcome::Conflict);
    assert_eq!(w.poll(t0), Some(BeatAction::ReadOwnKey));
    let mine = w.record();
    assert_eq!(w.own_key_read(t0, Some((9, mine))), Ok(None));
    let _ = w.poll(t0);
    w.on_beat(t0, t0, BeatOutcome::Conflict);
    let _ = w.poll(t0);
    let mut theirs = w.record();
    theirs.instance = "other".into();
    assert_eq!(
        w.own_key_read(t0, Some((10, theirs))),
        Err(WorkerEvent::IdLost)
    );
    let _ = w.poll(t0);
    assert!(matches!(
        w.own_key_read(t0, None),
        Ok(Some(BeatAction::Create(_)))
    ));
}

#[test]
fn suspended_worker_stops_beating_and_fences() {
    let t0 = Instant::now();
    let mut w = core(t0);
    w.on_assignment(Some(&record(2, 1, 0, &["a"])));
    w.suspend();
    assert_eq!(w.poll(t0 + I * 2), None);
    assert!(matches!(w.tick(t0 + I * 3), Some(WorkerEvent::Fenced(_))));
    w.resume(t0 + I * 4);
    assert!(w.poll(t0 + I * 4).is_some());
}

#[test]
fn degraded_alerts_escalate() {
    let at: Vec<u64> = (0..7).map(|n| degraded_alert_at(n).as_secs()).collect();
    assert_eq!(at, vec![0, 30, 120, 300, 600, 1200, 1800]);
}

#[test]
fn applied_triggers_an_immediate_beat() {
    let t0 = Instant::now();
    let mut w = core(t0);
    let _ = w.poll(t0);
    w.on_beat(t0, t0, BeatOutcome::Written(2));
    assert_eq!(w.poll(t0 + I / 2), None);
    w.applied(t0 + I / 2, 5);
    match w.poll(t0 + I / 2) {
        Some(BeatAction::Update { record, .. }) => assert_eq!(record.applied, 5),
        other => panic!("{other:?}"),
    }
}

#[test]
fn heartbeats_report_the_version_installing_before_it_is_applied() {
    let t0 = Instant::now();
    let mut w = core(t0);
    assert!(matches!(
        w.on_assignment(Some(&record(5, 1, 0, &["p1"]))),
        Some(WorkerEvent::Apply(_))
    ));
    let (applied, told) = {
        let r = w.record();
        (r.applied, r.told)
    };
    assert_eq!((applied, told), (0, 5), "told of v5, its callback running");
    w.applied(t0, 5);
    assert_eq!((w.record().applied, w.record().told), (5, 5));
}

#[test]
fn a_restamped_older_version_is_not_applied_over_a_newer_one() {
    let mut w = core(Instant::now());
    assert!(w.on_assignment(Some(&record(5, 1, 0, &["p0"]))).is_some());
    // The store went back to this worker's v4; a new leader re-stamped it.
    assert_eq!(w.on_assignment(Some(&record(4, 9, 0, &[]))), None);
    assert_eq!(w.on_assignment(Some(&record(5, 9, 0, &["p1"]))), None);
    assert_eq!(w.current().version(), 5);
    // The same version re-stamped unchanged is taken silently.
    assert_eq!(w.on_assignment(Some(&record(5, 9, 0, &["p0"]))), None);
    assert_eq!(w.current().epoch(), 9);
    // That leader's own version is applied.
    assert!(matches!(
        w.on_assignment(Some(&record(6, 9, 0, &["p1"]))),
        Some(WorkerEvent::Apply(_))
    ));
}
