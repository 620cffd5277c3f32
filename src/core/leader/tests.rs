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
    // 40,000 partitions of 20-byte ids: over 1 MiB in one record.
    let partitions = (0..40_000).map(|i| Partition::new(format!("partition-{i:010}")));
    node.handle_source(t0, Ok(partitions.collect()));
    let beat = WorkerRecord::starting("i0", String::new(), 1);
    node.handle_watch(
        t0,
        WatchEvent::Put(Entry {
            key: "worker-0".into(),
            value: wire::encode(&beat),
            revision: 1,
        }),
    );
    node.handle_watch(t0, WatchEvent::Synced);
    let mut reported = false;
    let mut now = t0;
    for _ in 0..20 {
        now += Duration::from_millis(50);
        node.handle_timeout(now);
        while let Some(op) = node.poll_op(now) {
            if let Op::Create { key, value, .. } | Op::Update { key, value, .. } = &op {
                assert!(
                    value.len() <= wire::MAX_RECORD_BYTES,
                    "{key}: {} bytes sent",
                    value.len()
                );
            }
            assert_eq!(op.bucket(), Bucket::Assignments);
            let reply = op.perform(&store as &dyn KvStore);
            node.handle_reply(now, reply);
        }
        while let Some(effect) = node.poll_effect() {
            if let LeaderEffect::Report(Error::RecordTooLarge { key, bytes, .. }) = effect {
                assert_eq!(key, "worker-0");
                assert!(bytes > wire::MAX_RECORD_BYTES);
                reported = true;
            }
        }
    }
    assert!(reported, "the oversized record was not reported");
    assert!(
        store.get("worker-0").expect("get").is_none(),
        "the record was written"
    );
    assert!(node.published > 0, "a publication was computed");
}
