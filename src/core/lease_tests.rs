//! Unit tests of `lease.rs`.

use super::*;

#[test]
fn a_resigned_worker_sits_out_then_campaigns_again() {
    let t0 = Instant::now();
    let ttl = Duration::from_secs(3);
    let mut c = LeaseCore::new("w", "me", ttl);
    assert_eq!(c.poll(t0), Some(LeaseAction::Read));
    c.on_result(t0, t0, &LeaseAction::Read, WriteOutcome::Unknown);
    c.observe(t0, 0, None);
    let create = c.poll(t0).unwrap();
    assert_eq!(
        c.on_result(t0, t0, &create, WriteOutcome::Written(4)),
        vec![LeaseEvent::Acquired { epoch: 4 }]
    );
    let back = t0 + ttl * 2;
    assert_eq!(c.resign_until(back), Some(4));
    assert!(!c.is_leader());
    // It may look at the key, but not campaign, even when it is free.
    assert_eq!(c.poll(t0), Some(LeaseAction::Read));
    c.on_result(t0, t0, &LeaseAction::Read, WriteOutcome::Unknown);
    c.observe(t0, 5, None);
    assert_eq!(c.poll(t0 + ttl), None);
    assert_eq!(
        c.next_deadline(t0 + ttl),
        back,
        "wakes when the sit-out ends, not before"
    );
    assert!(matches!(c.poll(back), Some(LeaseAction::Create(_))));
}

const TTL: Duration = Duration::from_secs(3);

fn rec(instance: &str, epoch: u64) -> LeaderRecord {
    LeaderRecord {
        worker: format!("w-{instance}"),
        instance: instance.into(),
        epoch,
    }
}

#[test]
fn creates_when_absent_and_renews() {
    let t0 = Instant::now();
    let mut l = LeaseCore::new("w-a", "a", TTL);
    assert_eq!(l.poll(t0), Some(LeaseAction::Read));
    l.on_result(t0, t0, &LeaseAction::Read, WriteOutcome::Unknown);
    l.observe(t0, 0, None);
    let create = l.poll(t0).unwrap();
    assert!(matches!(create, LeaseAction::Create(_)));
    let ev = l.on_result(t0, t0, &create, WriteOutcome::Written(7));
    assert_eq!(ev, vec![LeaseEvent::Acquired { epoch: 7 }]);
    assert_eq!(l.poll(t0 + Duration::from_millis(500)), None);
    let renew = l.poll(t0 + TTL / 3).unwrap();
    assert_eq!(
        renew,
        LeaseAction::Renew {
            revision: 7,
            record: rec("a", 7)
        }
    );
}

#[test]
fn follower_takes_over_only_after_a_full_ttl_unchanged() {
    let t0 = Instant::now();
    let mut l = LeaseCore::new("w-b", "b", TTL);
    l.observe(t0, 5, Some(rec("a", 5)));
    assert_eq!(l.poll(t0 + TTL - Duration::from_millis(1)), None);
    // A renewal resets the clock.
    l.observe(t0 + Duration::from_secs(1), 6, Some(rec("a", 5)));
    assert_eq!(l.poll(t0 + TTL), None);
    let t = t0 + Duration::from_secs(1) + TTL;
    assert_eq!(
        l.poll(t),
        Some(LeaseAction::Takeover {
            revision: 6,
            record: rec("b", 0)
        })
    );
}

#[test]
fn leader_steps_down_before_a_follower_can_take_over() {
    let t0 = Instant::now();
    let mut leader = LeaseCore::new("w-a", "a", TTL);
    leader.observe(t0, 0, None);
    let a = leader.poll(t0).unwrap();
    leader.on_result(t0, t0, &a, WriteOutcome::Written(1));
    let mut follower = LeaseCore::new("w-b", "b", TTL);
    // The follower sees the write a little later than it was sent.
    let seen = t0 + Duration::from_millis(10);
    follower.observe(seen, 1, Some(rec("a", 0)));
    // Every renewal fails from now on.
    let mut t = t0;
    let mut stepped_down_at = None;
    while t < t0 + TTL * 2 {
        if let Some(act) = leader.poll(t) {
            leader.on_result(t, t, &act, WriteOutcome::Unknown);
        }
        if leader.tick(t) == vec![LeaseEvent::Lost] {
            stepped_down_at = Some(t);
            break;
        }
        t += Duration::from_millis(10);
    }
    let stepped = stepped_down_at.expect("leader stepped down");
    let takeover_possible = seen + TTL;
    assert!(stepped < takeover_possible);
    assert_eq!(follower.poll(stepped), None);
    assert!(matches!(
        follower.poll(takeover_possible),
        Some(LeaseAction::Takeover { .. })
    ));
}

#[test]
fn seeing_another_holder_deposes() {
    let t0 = Instant::now();
    let mut l = LeaseCore::new("w-a", "a", TTL);
    l.observe(t0, 0, None);
    let a = l.poll(t0).unwrap();
    l.on_result(t0, t0, &a, WriteOutcome::Written(1));
    let ev = l.observe(t0, 2, Some(rec("b", 0)));
    assert!(ev.contains(&LeaseEvent::Lost));
    assert!(!l.is_leader());
}

#[test]
fn a_stale_replay_after_our_takeover_is_ignored() {
    let t0 = Instant::now();
    let mut l = LeaseCore::new("w-b", "b", TTL);
    l.observe(t0, 4, Some(rec("a", 2)));
    let t = t0 + TTL;
    let act = l.poll(t).unwrap();
    l.on_result(t, t, &act, WriteOutcome::Written(5));
    assert!(l.observe(t, 4, Some(rec("a", 2))).is_empty());
    assert!(l.observe(t, 3, None).is_empty());
    assert!(l.is_leader());
}

#[test]
fn renew_conflict_deposes() {
    let t0 = Instant::now();
    let mut l = LeaseCore::new("w-a", "a", TTL);
    l.observe(t0, 0, None);
    let a = l.poll(t0).unwrap();
    l.on_result(t0, t0, &a, WriteOutcome::Written(1));
    let r = l.poll(t0 + TTL).unwrap();
    assert_eq!(
        l.on_result(t0 + TTL, t0 + TTL, &r, WriteOutcome::Conflict),
        vec![LeaseEvent::Lost]
    );
}

#[test]
fn a_lease_the_store_forgot_is_kept_but_not_acted_on_until_renewed() {
    let t0 = Instant::now();
    let ms = Duration::from_millis(1);
    let mut l = LeaseCore::new("w-a", "a", TTL);
    l.observe(t0, 0, None);
    let a = l.poll(t0).unwrap();
    l.on_result(t0, t0, &a, WriteOutcome::Written(1));
    let t1 = t0 + ms * 100;
    assert!(l.valid_until().is_some_and(|t| t > t1));
    assert!(l.store_reset(t1).is_empty(), "kept, not lost");
    assert!(l.is_leader());
    assert_eq!(l.valid_until(), Some(t1), "not acted on from the reset");
    // Read at once, not renewed on the revision it knew; found ours.
    assert_eq!(l.poll(t1), Some(LeaseAction::Read));
    l.on_result(t1, t1, &LeaseAction::Read, WriteOutcome::Unknown);
    let seen = l.observe(t1, 1, Some(rec("a", 1)));
    assert!(!seen.contains(&LeaseEvent::Lost), "{seen:?}");
    assert_eq!(l.valid_until(), Some(t1), "a read proves nothing");
    // A renewal sent before the reset proves nothing either.
    let renew = l.poll(t1).unwrap();
    assert!(matches!(renew, LeaseAction::Renew { revision: 1, .. }));
    l.on_result(t1, t0 + ms * 50, &renew, WriteOutcome::Written(2));
    assert_eq!(l.valid_until(), Some(t1));
    let renew = l.poll(t1).unwrap();
    assert!(matches!(renew, LeaseAction::Renew { revision: 2, .. }));
    l.on_result(t1 + ms, t1, &renew, WriteOutcome::Written(3));
    assert_eq!(l.valid_until(), Some(t1 + ratios::step_down_after(TTL)));
    // Had the store lost it, the read would have found it gone.
    l.store_reset(t1 + ms * 2);
    assert_eq!(l.poll(t1 + ms * 2), Some(LeaseAction::Read));
    l.on_result(
        t1 + ms * 3,
        t1 + ms * 2,
        &LeaseAction::Read,
        WriteOutcome::Unknown,
    );
    assert_eq!(l.observe(t1 + ms * 3, 0, None), vec![LeaseEvent::Lost]);
}

#[test]
fn after_the_store_forgot_a_holder_never_renews_over_a_record_at_its_old_revision() {
    let t0 = Instant::now();
    let ms = Duration::from_millis(1);
    let mut l = LeaseCore::new("w-a", "a", TTL);
    l.observe(t0, 0, None);
    let a = l.poll(t0).unwrap();
    l.on_result(t0, t0, &a, WriteOutcome::Written(3));
    let t1 = t0 + ms * 100;
    l.store_reset(t1);
    // The store started again, and another worker's record reached the
    // revision this holder knows: a compare-and-set on it would land.
    assert_eq!(l.poll(t1), Some(LeaseAction::Read));
    l.on_result(t1, t1, &LeaseAction::Read, WriteOutcome::Unknown);
    let seen = l.observe(t1 + ms, 3, Some(rec("b", 1)));
    assert!(seen.contains(&LeaseEvent::Lost), "{seen:?}");
    assert!(!l.is_leader());
    assert_eq!(l.valid_until(), None);
    assert!(!matches!(l.poll(t1 + ms), Some(LeaseAction::Renew { .. })));
}

#[test]
fn a_revision_issued_again_to_another_record_restarts_the_wait() {
    let t0 = Instant::now();
    let mut l = LeaseCore::new("w-b", "b", TTL);
    l.observe(t0, 3, Some(rec("a", 3)));
    // The store went back; the holder's new record got revision 3 again.
    let t1 = t0 + TTL - Duration::from_millis(100);
    assert_eq!(
        l.observe(t1, 3, Some(rec("a", 1))),
        vec![LeaseEvent::Epoch(1)]
    );
    assert_eq!(l.poll(t0 + TTL), None, "not unchanged for a TTL");
    assert!(matches!(
        l.poll(t1 + TTL),
        Some(LeaseAction::Takeover { revision: 3, .. })
    ));
}
