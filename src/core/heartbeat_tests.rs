//! Unit tests of the heartbeat node, with explicit instants.

use std::time::{Duration, Instant};

use super::{HeartbeatEffect, HeartbeatNode};
use crate::core::node::Node;
use crate::core::ops::{Op, Reply};
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
