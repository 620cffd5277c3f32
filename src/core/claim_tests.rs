//! Unit tests of `claim.rs`.

use super::*;
use crate::store::memory::MemoryBackend;
use crate::store::{BucketConfig, KvBackend, KvStore};
use std::sync::Arc;

fn record(instance: &str) -> WorkerRecord {
    WorkerRecord::starting(instance, String::new(), 0)
}

fn store() -> Arc<dyn KvStore> {
    let backend = MemoryBackend::new(Arc::new(crate::clock::SystemClock));
    backend.open(&BucketConfig::new("workers", None)).unwrap()
}

/// Drives the node at virtual `now`, stepping time to its timeouts.
fn drive(node: &mut ClaimNode, store: &dyn KvStore, now: Instant) -> (ClaimEffect, Instant) {
    drive_with(node, store, store, now)
}

/// As `drive`, with the assignments bucket apart.
fn drive_with(
    node: &mut ClaimNode,
    store: &dyn KvStore,
    assignments: &dyn KvStore,
    mut now: Instant,
) -> (ClaimEffect, Instant) {
    for _ in 0..1000 {
        while let Some(op) = node.poll_op(now) {
            let reply = match op.bucket() {
                Bucket::Assignments => op.perform(assignments),
                _ => op.perform(store),
            };
            node.handle_reply(now, reply);
        }
        if let Some(e) = node.poll_effect() {
            return (e, now);
        }
        now = node
            .poll_timeout()
            .expect("a node with nothing in flight waits for a time");
    }
    panic!("the claim never ended");
}

fn assert_claimed(e: &ClaimEffect, want: &str) {
    assert!(
        matches!(e, ClaimEffect::Claimed { id, .. } if id == want),
        "{e:?}"
    );
}

/// `drive_with` from a node of `config` for a process `instance`.
fn claim_in(
    config: &Config,
    instance: &str,
    workers: &dyn KvStore,
    assignments: &dyn KvStore,
) -> ClaimEffect {
    let mut node = ClaimNode::new(config, None, &record(instance), None);
    drive_with(&mut node, workers, assignments, Instant::now()).0
}

#[test]
fn the_lowest_free_id_is_taken() {
    let s = store();
    s.create("worker-0", b"x").unwrap();
    let c = Config::default();
    let mut node = ClaimNode::new(&c, None, &record("a"), None);
    let (e, _) = drive(&mut node, s.as_ref(), Instant::now());
    assert_claimed(&e, "worker-1");
}

#[test]
fn a_free_id_with_a_published_assignment_is_taken_last() {
    // The workers bucket was lost and recreated: worker-0 runs on but
    // has not written its key again; its assignment is still there.
    let workers = store();
    let assignments = store();
    assignments.create("worker-0", b"{}").unwrap();
    assignments.create("_meta", b"{}").unwrap();
    let (w, a) = (workers.as_ref(), assignments.as_ref());
    assert_claimed(&claim_in(&Config::default(), "a", w, a), "worker-1");
    // With every other ID taken, it is still used.
    let c = Config {
        max_workers: 2,
        ..Config::default()
    };
    assert_claimed(&claim_in(&c, "b", w, a), "worker-0");
}

#[test]
fn a_held_preferred_id_is_taken_over_after_a_quiet_ttl() {
    let s = store();
    s.create("worker-3", &wire::encode(&record("old"))).unwrap();
    let c = Config::default();
    let t0 = Instant::now();
    let mut node = ClaimNode::new(&c, Some("worker-3"), &record("new"), None);
    let (e, at) = drive(&mut node, s.as_ref(), t0);
    match e {
        ClaimEffect::Claimed {
            id, took_over_from, ..
        } => {
            assert_eq!(id, "worker-3");
            assert_eq!(took_over_from.as_deref(), Some("old"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        at >= t0 + c.heartbeat_ttl,
        "not before a whole TTL: {:?}",
        at - t0
    );
}

#[test]
fn a_preferred_id_whose_takeover_would_outlast_the_deadline_is_given_up() {
    let s = store();
    s.create("worker-3", b"{}").unwrap();
    let c = Config::default();
    let t0 = Instant::now();
    let mut node = ClaimNode::new(
        &c,
        Some("worker-3"),
        &record("new"),
        Some(t0 + c.heartbeat_ttl / 2),
    );
    let (e, at) = drive(&mut node, s.as_ref(), t0);
    assert_claimed(&e, "worker-0");
    assert_eq!(at, t0, "without waiting");
}

#[test]
fn a_full_group_is_a_typed_error() {
    let s = store();
    let c = Config {
        max_workers: 2,
        ..Config::default()
    };
    s.create("worker-0", b"x").unwrap();
    s.create("worker-1", b"x").unwrap();
    let mut node = ClaimNode::new(&c, None, &record("a"), None);
    let (e, _) = drive(&mut node, s.as_ref(), Instant::now());
    assert!(
        matches!(
            e,
            ClaimEffect::Failed(Error::NoFreeWorkerId { max_workers: 2 })
        ),
        "{e:?}"
    );
}

fn timeout(op: &'static str) -> crate::store::KvError {
    crate::store::KvError::Timeout {
        op,
        after: Duration::from_millis(100),
    }
}

/// Answers the listing of the assignments bucket: nothing published.
fn assigned_none(node: &mut ClaimNode, now: Instant) {
    assert!(matches!(
        node.poll_op(now),
        Some(Op::Keys {
            bucket: Bucket::Assignments
        })
    ));
    node.handle_reply(now, Reply::Keys(Ok(vec![])));
}

#[test]
fn a_failed_step_is_tried_again_until_the_deadline() {
    let t0 = Instant::now();
    let c = Config::default();
    let mut node = ClaimNode::new(&c, None, &record("a"), Some(t0 + Duration::from_secs(5)));
    assert!(matches!(node.poll_op(t0), Some(Op::Keys { .. })));
    node.handle_reply(t0, Reply::Keys(Err(timeout("keys"))));
    assert!(node.poll_effect().is_none(), "not given up");
    assert!(node.poll_op(t0).is_none(), "not at once");
    let retry = node.poll_timeout().expect("a retry is due");
    assert!(retry > t0);
    assert!(matches!(node.poll_op(retry), Some(Op::Keys { .. })));
    node.handle_reply(retry, Reply::Keys(Ok(vec![])));
    assigned_none(&mut node, retry);
    assert!(matches!(node.poll_op(retry), Some(Op::Create { key, .. }) if key == "worker-0"));
    node.handle_reply(retry, Reply::Written(Ok(3)));
    assert!(matches!(
        node.poll_effect(),
        Some(ClaimEffect::Claimed { id, revision: 3, .. }) if id == "worker-0"
    ));

    // Past the deadline the error ends the claim.
    let mut node = ClaimNode::new(&c, None, &record("a"), Some(t0 + Duration::from_millis(1)));
    let _ = node.poll_op(t0);
    node.handle_reply(t0, Reply::Keys(Err(timeout("keys"))));
    assert!(matches!(node.poll_effect(), Some(ClaimEffect::Failed(_))));
}

#[test]
fn a_create_that_timed_out_but_landed_is_recognised() {
    let t0 = Instant::now();
    let c = Config::default();
    let mine = record("a");
    let mut node = ClaimNode::new(&c, None, &mine, Some(t0 + Duration::from_secs(5)));
    let _ = node.poll_op(t0);
    node.handle_reply(t0, Reply::Keys(Ok(vec![])));
    assigned_none(&mut node, t0);
    let _ = node.poll_op(t0);
    node.handle_reply(t0, Reply::Written(Err(timeout("create"))));
    let retry = node.poll_timeout().expect("a retry is due");
    // It reads the key first: the create had landed at revision 9.
    assert!(matches!(node.poll_op(retry), Some(Op::Get { key, .. }) if key == "worker-0"));
    let landed = Entry {
        key: "worker-0".into(),
        value: wire::encode(&mine),
        revision: 9,
    };
    node.handle_reply(retry, Reply::Entry(Ok(Some(landed))));
    assert!(matches!(
        node.poll_effect(),
        Some(ClaimEffect::Claimed { id, revision: 9, .. }) if id == "worker-0"
    ));
}
