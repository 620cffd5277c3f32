//! Unit tests of the heartbeat node, with explicit instants.

use std::time::{Duration, Instant};

use super::{HeartbeatEffect, HeartbeatInput, HeartbeatNode};
use crate::core::node::Node;
use crate::core::ops::{Op, Reply};
use crate::store::{Entry, WatchEvent};
use crate::wire::{self, AssignmentRecord, OwnedPartition};
use crate::Config;

fn node(now: Instant) -> HeartbeatNode {
    let config = Config::fast();
    HeartbeatNode::new("worker-0", "i0", 10, &config, ("w", "a"), now)
}

/// Answers every heartbeat due by `now` with `revision`; returns the
/// effects that came out.
fn beat(n: &mut HeartbeatNode, now: Instant, revision: u64) -> Vec<HeartbeatEffect> {
    n.handle_timeout(now);
    let op = n.poll_op(now).expect("a heartbeat is due");
    assert!(matches!(op, Op::Update { .. }), "{op:?}");
    n.handle_reply(now, Reply::Written(Ok(revision)));
    std::iter::from_fn(|| n.poll_effect()).collect()
}

#[test]
fn a_heartbeat_stored_at_an_old_revision_means_the_store_went_back() {
    let t0 = Instant::now();
    let mut n = node(t0);
    let step = Config::fast().heartbeat_interval + Duration::from_millis(1);
    let effects = beat(&mut n, t0 + step, 20);
    assert!(!effects
        .iter()
        .any(|e| matches!(e, HeartbeatEffect::StoreWentBack)));
    // The store was rolled back: our next write gets a revision issued
    // before.
    let effects = beat(&mut n, t0 + step * 2, 12);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, HeartbeatEffect::StoreWentBack)),
        "{effects:?}"
    );
    // Rising again from there is normal.
    let effects = beat(&mut n, t0 + step * 3, 13);
    assert!(!effects
        .iter()
        .any(|e| matches!(e, HeartbeatEffect::StoreWentBack)));
}

/// A heartbeat that finds the store went back asks, once, for its
/// assignments watch to be opened again (the driver and the simulator's
/// stepper both obey): the records a new leader writes at the revisions
/// issued again would not reach a watch resumed past them.
#[test]
fn a_store_that_went_back_asks_for_a_new_assignments_watch_once() {
    let t0 = Instant::now();
    let mut n = node(t0);
    let step = Config::fast().heartbeat_interval + Duration::from_millis(1);
    beat(&mut n, t0 + step, 20);
    assert!(!n.poll_rewatch(), "nothing went back yet");
    beat(&mut n, t0 + step * 2, 12);
    assert!(n.poll_rewatch(), "the store went back");
    assert!(!n.poll_rewatch(), "asked once");
    beat(&mut n, t0 + step * 3, 13);
    assert!(!n.poll_rewatch());
}

/// The record of `version` granting `ids`, as the leader publishes it.
fn record(version: u64, ids: &[&str]) -> WatchEvent {
    let record = AssignmentRecord {
        version,
        epoch: 1,
        reason: crate::RebalanceKind::ColdStart,
        instance: "i0".into(),
        incarnation: 0,
        partitions: (ids.iter())
            .map(|id| OwnedPartition {
                id: id.to_string(),
                weight: 1,
                token: version,
            })
            .collect(),
        incoming: vec![],
    };
    WatchEvent::Put(Entry {
        key: "worker-0".into(),
        value: wire::encode(&record),
        revision: 2 + version,
    })
}

/// A node that holds `p0` (version 1, applied).
fn holding(now: Instant) -> HeartbeatNode {
    let mut n = node(now);
    n.handle_watch(now, record(1, &["p0"]));
    let effects: Vec<_> = std::iter::from_fn(|| n.poll_effect()).collect();
    assert!(
        effects.iter().any(|e| matches!(
            e,
            HeartbeatEffect::Install {
                has_assignment: true,
                ..
            }
        )),
        "{effects:?}"
    );
    n.handle_input(now, HeartbeatInput::Applied(1));
    n
}

/// Leaving, the worker releases what it holds (here: its key was cleared,
/// it fences itself); it is drained only once that release callback has
/// returned — the manager then deletes its key, and the leader grants its
/// partitions elsewhere at once.
#[test]
fn a_leaver_is_drained_only_once_its_release_callback_returned() {
    let t0 = Instant::now();
    let mut n = holding(t0);
    n.handle_input(t0, HeartbeatInput::Leave);
    let deleted = WatchEvent::Delete {
        key: "worker-0".into(),
        revision: 4,
    };
    n.handle_watch(t0, deleted);
    let effects: Vec<_> = std::iter::from_fn(|| n.poll_effect()).collect();
    assert!(
        effects.iter().any(|e| matches!(
            e,
            HeartbeatEffect::Install {
                has_assignment: false,
                ..
            }
        )),
        "{effects:?}"
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, HeartbeatEffect::Drained)),
        "drained while the release callback runs: {effects:?}"
    );
    n.handle_input(t0, HeartbeatInput::Applied(1));
    assert!(std::iter::from_fn(|| n.poll_effect()).any(|e| matches!(e, HeartbeatEffect::Drained)));
}

/// Drained, a leaver starts nothing a leader granted before it saw the
/// departure: the shell quits next and deletes the key, which the leader
/// would take as everything released.
#[test]
fn a_drained_leaver_starts_no_new_grant() {
    let t0 = Instant::now();
    let mut n = holding(t0);
    n.handle_input(t0, HeartbeatInput::Leave);
    n.handle_watch(t0, record(2, &[]));
    n.handle_input(t0, HeartbeatInput::Applied(2));
    let effects: Vec<_> = std::iter::from_fn(|| n.poll_effect()).collect();
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, HeartbeatEffect::Drained)),
        "{effects:?}"
    );
    n.handle_watch(t0, record(3, &["p3"]));
    let effects: Vec<_> = std::iter::from_fn(|| n.poll_effect()).collect();
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, HeartbeatEffect::Install { .. })),
        "a grant was started after draining: {effects:?}"
    );
}
