//! The leader node over a memory store, with explicit instants.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::SystemClock;
use crate::core::ops::{Bucket, Op};
use crate::store::memory::MemoryBackend;
use crate::store::{BucketConfig, Entry, KvStore, WatchEvent};
use crate::strategy::BoundedLoad;
use crate::wire::{self, WorkerRecord};
use crate::{Config, Error, Partition};

use super::{LeaderEffect, LeaderInput, LeaderNode, LeaderParams};
use crate::core::node::Node;

/// A leader node of epoch 1 holding a lease for an hour from `t0`, and the
/// memory store its operations go to.
fn in_office(config: &Config, t0: Instant) -> (LeaderNode, crate::store::memory::MemoryStore) {
    let params = LeaderParams {
        id: "worker-0".into(),
        config: config.clone(),
        strategy: Arc::new(BoundedLoad::default()),
        refresh_every: None,
        buckets: ("workers".into(), "assignments".into()),
    };
    let store = MemoryBackend::new(Arc::new(SystemClock))
        .open_store(&BucketConfig::new("assignments", None))
        .expect("memory store");
    let mut node = LeaderNode::new(params, 1, t0);
    node.handle_input(t0, LeaderInput::Lease(Some(t0 + Duration::from_secs(3600))));
    (node, store)
}

/// worker-0's heartbeat `beat`, seen in the workers bucket at `revision`.
fn heartbeat(beat: &WorkerRecord, revision: u64) -> WatchEvent {
    WatchEvent::Put(Entry {
        key: "worker-0".into(),
        value: wire::encode(beat),
        revision,
    })
}

/// Runs `node` in steps of 50 ms for `rounds` steps from `now`: each of
/// its operations goes to `store` (and is shown to `on_op` first), each
/// effect to `on_effect`.
fn step(
    node: &mut LeaderNode,
    store: &dyn KvStore,
    now: &mut Instant,
    rounds: usize,
    mut on_op: impl FnMut(&Op),
    mut on_effect: impl FnMut(LeaderEffect),
) {
    for _ in 0..rounds {
        *now += Duration::from_millis(50);
        node.handle_timeout(*now);
        while let Some(op) = node.poll_op(*now) {
            on_op(&op);
            let reply = op.perform(store);
            node.handle_reply(*now, reply);
        }
        while let Some(effect) = node.poll_effect() {
            on_effect(effect);
        }
    }
}

/// A lone worker is given more partitions than one NATS message holds: the
/// record is reported and never sent (a server would close the leader's
/// connection).
#[test]
fn a_record_too_large_for_nats_is_reported_and_not_sent() {
    let config = Config {
        cold_start_window: Duration::from_millis(100),
        ..Config::default()
    };
    let t0 = Instant::now();
    let (mut node, store) = in_office(&config, t0);
    // 40,000 partitions of 20-byte ids: over 1 MiB in one record.
    let partitions = (0..40_000).map(|i| Partition::new(format!("partition-{i:010}")));
    node.handle_source(t0, Ok(partitions.collect()));
    let beat = WorkerRecord::starting("i0", String::new(), 1);
    node.handle_watch(t0, heartbeat(&beat, 1));
    node.handle_watch(t0, WatchEvent::Synced);
    let mut reported = false;
    let mut now = t0;
    let on_op = |op: &Op| {
        if let Op::Create { key, value, .. } | Op::Update { key, value, .. } = op {
            assert!(
                value.len() <= wire::MAX_RECORD_BYTES,
                "{key}: {} bytes sent",
                value.len()
            );
        }
        assert_eq!(op.bucket(), Bucket::Assignments);
    };
    let on_effect = |effect| {
        if let LeaderEffect::Report(Error::RecordTooLarge { key, bytes, .. }) = effect {
            assert_eq!(key, "worker-0");
            assert!(bytes > wire::MAX_RECORD_BYTES);
            reported = true;
        }
    };
    step(&mut node, &store, &mut now, 20, on_op, on_effect);
    assert!(reported, "the oversized record was not reported");
    assert!(
        store.get("worker-0").expect("get").is_none(),
        "the record was written"
    );
    assert!(node.published > 0, "a publication was computed");
}

/// A third party overwrote a worker's record with garbage: the leader's
/// next write of that key finds it (the compare-and-set fails, the read
/// before writing again shows it), reports it as corrupt, and replaces it.
#[test]
fn a_corrupt_record_found_before_writing_is_reported_and_replaced() {
    let config = Config {
        cold_start_window: Duration::from_millis(100),
        ..Config::default()
    };
    let t0 = Instant::now();
    let (mut node, store) = in_office(&config, t0);
    let list = |n: usize| (0..n).map(|i| Partition::new(format!("p{i}"))).collect();
    node.handle_source(t0, Ok(list(2)));
    let mut beat = WorkerRecord::starting("i0", String::new(), 1);
    let mut revision = 1;
    let mut beat_again = |node: &mut LeaderNode, now, applied| {
        beat.applied = applied;
        revision += 1;
        node.handle_watch(now, heartbeat(&beat, revision));
    };
    beat_again(&mut node, t0, 0);
    node.handle_watch(t0, WatchEvent::Synced);
    let mut now = t0;
    let mut corrupt_reported = false;
    let run = |node: &mut LeaderNode, now: &mut Instant, reported: &mut bool| {
        // Past the retry of a failed write (a quarter heartbeat interval).
        step(
            node,
            &store,
            now,
            40,
            |_| {},
            |effect| {
                if let LeaderEffect::Report(Error::Corrupt { key, .. }) = effect {
                    assert_eq!(key, "worker-0");
                    *reported = true;
                }
            },
        );
    };
    run(&mut node, &mut now, &mut corrupt_reported);
    let first = store.get("worker-0").expect("get").expect("published");
    let version = wire::decode::<wire::AssignmentRecord>("a", "worker-0", &first.value)
        .expect("a record")
        .version;
    beat_again(&mut node, now, version);
    store.put("worker-0", b"not json at all").expect("put");
    // More work for the lone worker: its record must be written again.
    node.handle_source(now, Ok(list(4)));
    run(&mut node, &mut now, &mut corrupt_reported);
    assert!(corrupt_reported, "the corrupt record was not reported");
    let last = store.get("worker-0").expect("get").expect("a record");
    let record = wire::decode::<wire::AssignmentRecord>("a", "worker-0", &last.value)
        .expect("the corrupt value was replaced");
    assert_eq!(record.partitions.len(), 4);
}

/// A term told the wall clock numbers its versions, and so its tokens,
/// from above it: a store that forgot every record (emptied) cannot make a
/// new term hand out tokens below those of the terms before it.
#[test]
fn a_term_numbers_its_versions_from_above_the_wall_clock() {
    let config = Config {
        cold_start_window: Duration::from_millis(100),
        ..Config::default()
    };
    let t0 = Instant::now();
    let (mut node, store) = in_office(&config, t0);
    let wall = 1_800_000_000_000;
    node.handle_input(t0, LeaderInput::WallClock(wall));
    node.handle_source(
        t0,
        Ok((0..4).map(|i| Partition::new(format!("p{i}"))).collect()),
    );
    let beat = WorkerRecord::starting("i0", String::new(), 1);
    node.handle_watch(t0, heartbeat(&beat, 1));
    node.handle_watch(t0, WatchEvent::Synced);
    let mut now = t0;
    step(&mut node, &store, &mut now, 20, |_| {}, |_| {});
    let entry = store
        .get("worker-0")
        .expect("get")
        .expect("worker-0 written");
    let record: wire::AssignmentRecord =
        wire::decode("assignments", "worker-0", &entry.value).expect("a record");
    assert!(
        record.version > wall,
        "v{} is not above {wall}",
        record.version
    );
    assert!(!record.partitions.is_empty());
    assert!(record.partitions.iter().all(|p| p.token > wall));
}

/// The store gave epoch 1 to two terms (the lease bucket forgot, and the
/// other term's holder acts on its lease until a renewal fails): a new
/// leader that finds the summary naming another leader under its own epoch
/// writes nothing — a re-stamp under an equal epoch fences nobody — until
/// a renewal sent after the finding is confirmed, then leads on above it.
#[test]
fn a_summary_of_another_leader_under_this_epoch_holds_writes_until_a_renewal() {
    let config = Config {
        cold_start_window: Duration::from_millis(100),
        ..Config::default()
    };
    let t0 = Instant::now();
    let (mut node, store) = in_office(&config, t0);
    let meta = r#"{"version":3,"epoch":1,"reason":"cold_start","leader":"worker-9","workers":{"worker-0":1},"partitions":1,"unassigned":0}"#;
    store
        .put(crate::names::META_KEY, meta.as_bytes())
        .expect("put");
    let record = r#"{"version":3,"epoch":1,"reason":"cold_start","instance":"i0","incarnation":0,"partitions":[{"id":"p0","token":3}]}"#;
    store.put("worker-0", record.as_bytes()).expect("put");
    // The lease was last renewed before the finding.
    let step_down = crate::config::ratios::step_down_after(config.election_ttl);
    let renewed_before = t0 + step_down - Duration::from_millis(1);
    node.handle_input(t0, LeaderInput::Lease(Some(renewed_before)));
    node.handle_source(t0, Ok(vec![Partition::new("p0")]));
    let mut beat = WorkerRecord::starting("i0", String::new(), 1);
    beat.applied = 3;
    node.handle_watch(t0, heartbeat(&beat, 1));
    node.handle_watch(t0, WatchEvent::Synced);
    let run = |node: &mut LeaderNode, from: Instant, to: Instant| {
        let mut writes = 0;
        let mut now = from;
        let rounds = (to - from).as_millis() as usize / 50;
        let count =
            |op: &Op| writes += usize::from(matches!(op, Op::Update { .. } | Op::Create { .. }));
        step(node, &store, &mut now, rounds, count, |_| {});
        writes
    };
    let found = t0 + Duration::from_millis(500);
    assert_eq!(run(&mut node, t0, found), 0, "wrote under a twin's epoch");
    // A renewal sent after the finding is confirmed.
    node.handle_input(found, LeaderInput::Lease(Some(found + step_down)));
    assert!(run(&mut node, found, found + Duration::from_millis(500)) > 0);
    let stamped = store.get("worker-0").expect("get").expect("record");
    let stamped =
        wire::decode::<wire::AssignmentRecord>("a", "worker-0", &stamped.value).expect("a record");
    assert_eq!(stamped.epoch, 2, "led on above the twin's epoch");
}
