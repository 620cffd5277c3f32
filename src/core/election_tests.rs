//! The election node when the store forgets while no watch is open (the
//! simulator's `store` preset found each of these), with explicit instants.

use std::time::{Duration, Instant};

use super::{ElectionEffect, ElectionNode};
use crate::core::node::Node;
use crate::core::ops::{Op, Reply};
use crate::names::LEADER_KEY;
use crate::store::{Entry, WatchEvent};

const TTL: Duration = Duration::from_secs(3);

/// The node's pending effects include `EpochReset`.
pub(super) fn assert_epoch_reset(n: &mut ElectionNode) {
    let effects = drain(n);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, ElectionEffect::EpochReset)),
        "{effects:?}"
    );
}

/// The lease of `instance`, carrying `epoch`, at `revision`.
fn lease(instance: &str, epoch: u64, revision: u64) -> WatchEvent {
    WatchEvent::Put(entry(instance, epoch, revision))
}

fn entry(instance: &str, epoch: u64, revision: u64) -> Entry {
    Entry {
        key: LEADER_KEY.into(),
        value: format!(r#"{{"worker":"w-{instance}","instance":"{instance}","epoch":{epoch}}}"#)
            .into_bytes(),
        revision,
    }
}

fn drain(n: &mut ElectionNode) -> Vec<ElectionEffect> {
    std::iter::from_fn(|| n.poll_effect()).collect()
}

/// A follower saw x's lease at revision 3; its watch ended and, before the
/// next one opened, the bucket was dropped and x created the key again.
/// The new watch's replay does not show the key at 3: the follower reads
/// it again, and x's renewals up to revision 3 (the same record as before)
/// do not count as a lease left unchanged since the first sighting.
#[test]
fn a_replay_without_the_key_seen_makes_a_follower_read_it_again() {
    let t0 = Instant::now();
    let mut n = ElectionNode::new("w-me", "me", TTL, "leader", t0);
    n.handle_watch(t0, lease("x", 1, 3));
    n.handle_watch(t0, WatchEvent::Synced);
    drain(&mut n);
    assert_eq!(n.poll_op(t0), None, "waits for x's lease to go stale");
    let t1 = t0 + Duration::from_secs(1);
    n.handle_watch_end(t1, false);
    n.handle_watch(t1, WatchEvent::Synced);
    assert!(
        matches!(n.poll_op(t1), Some(Op::Get { .. })),
        "the replay showed nothing: read the key again"
    );
    n.handle_reply(t1, Reply::Entry(Ok(Some(entry("x", 0, 1)))));
    assert!(drain(&mut n)
        .iter()
        .any(|e| matches!(e, ElectionEffect::EpochReset)));
    // x renews at 2 then 3, the record it had at 3 before the drop.
    let t2 = t1 + Duration::from_secs(1);
    n.handle_watch(t2, lease("x", 1, 2));
    n.handle_watch(t2 + Duration::from_secs(1), lease("x", 1, 3));
    for t in [t0 + TTL, t2 + Duration::from_secs(1)] {
        assert!(
            !matches!(n.poll_op(t), Some(Op::Update { .. })),
            "took over a lease renewed {:?} ago",
            t - t2
        );
    }
}

/// The follower saw the lease at revision 17, then deleted; the store
/// forgot and its create lands at revision 1. Revisions start again: a
/// newer holder's write at revision 2 is news, not a stale replay.
#[test]
fn a_write_of_ours_stored_below_a_revision_seen_means_the_store_went_back() {
    let t0 = Instant::now();
    let mut n = ElectionNode::new("w-me", "me", TTL, "leader", t0);
    n.handle_watch(t0, lease("x", 0, 17));
    n.handle_watch(
        t0,
        WatchEvent::Delete {
            key: LEADER_KEY.into(),
            revision: 18,
        },
    );
    drain(&mut n);
    assert!(matches!(n.poll_op(t0), Some(Op::Create { .. })));
    n.handle_reply(t0, Reply::Written(Ok(1)));
    assert_epoch_reset(&mut n);
    n.handle_watch(t0, lease("y", 0, 2));
    assert!(
        drain(&mut n)
            .iter()
            .any(|e| matches!(e, ElectionEffect::Lost)),
        "another holder's lease at revision 2 was ignored as stale"
    );
}

/// The lease's epoch went down although its revision did not: the store
/// went back and issued that revision again, and a holder renewed over
/// another's record with its own, lower epoch. The workers are told to
/// reset the epochs they keep before they hear the new one.
#[test]
fn a_lease_epoch_below_one_seen_resets_the_epochs_the_workers_keep() {
    let t0 = Instant::now();
    let mut n = ElectionNode::new("w-me", "me", TTL, "leader", t0);
    n.handle_watch(t0, lease("a", 2, 2));
    let first = drain(&mut n);
    assert!(!first
        .iter()
        .any(|e| matches!(e, ElectionEffect::EpochReset)));
    n.handle_watch(t0, lease("b", 1, 3));
    let effects = drain(&mut n);
    let reset = effects
        .iter()
        .position(|e| matches!(e, ElectionEffect::EpochReset));
    let epoch = effects
        .iter()
        .position(|e| matches!(e, ElectionEffect::Epoch(1)));
    assert!(
        matches!((reset, epoch), (Some(r), Some(e)) if r < e),
        "the reset, then the new epoch: {effects:?}"
    );
    // A rising epoch is no reset.
    n.handle_watch(t0, lease("c", 4, 4));
    assert!(!drain(&mut n)
        .iter()
        .any(|e| matches!(e, ElectionEffect::EpochReset)));
}
