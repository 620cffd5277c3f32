//! Reads a group's buckets into one snapshot for `parti status`.
#![allow(deprecated)] // every item of the `nats` 0.26 crate is deprecated

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parti::source::KvSource;
use parti::wire::{
    self, AssignmentRecord, ControlRecord, LeaderRecord, MetaRecord, WorkerRecord, CONTROL_KEY,
};
use parti::BucketNames;

/// One worker as the buckets show it.
pub struct WorkerRow {
    pub id: String,
    /// `None` for a worker that has an assignment but no live key (gone).
    pub record: Option<WorkerRecord>,
    pub heartbeat_age: Option<Duration>,
    pub assignment: Option<AssignmentRecord>,
}

/// Everything `parti status` shows.
pub struct Snapshot {
    pub group: String,
    pub workers: Vec<WorkerRow>,
    pub leader: Option<(LeaderRecord, u64)>,
    pub meta: Option<MetaRecord>,
    /// Partition ids of the KV source, when the group uses one.
    pub source: Option<Vec<String>>,
    /// Values that could not be decoded: (bucket, key, reason).
    pub corrupt: Vec<(String, String, String)>,
    /// The operator's requests (`parti drain`, `parti rebalance`).
    pub control: ControlRecord,
}

impl Snapshot {
    /// Partitions of the KV source that no assignment holds. `None` when
    /// the group has no KV source (then only `_meta`'s count is known).
    pub fn unassigned(&self) -> Option<Vec<String>> {
        let source = self.source.as_ref()?;
        let owned: BTreeSet<&str> = self
            .workers
            .iter()
            .filter_map(|w| w.assignment.as_ref())
            .flat_map(|a| a.partitions.iter().map(|p| p.id.as_str()))
            .collect();
        Some(
            source
                .iter()
                .filter(|p| !owned.contains(p.as_str()))
                .cloned()
                .collect(),
        )
    }
}

type Store = nats::kv::Store;

/// The lease key in the leader bucket and the summary key in the
/// assignments bucket, as the library writes them.
const LEADER_KEY: &str = "leader";
const META_KEY: &str = "_meta";

/// Opens an existing bucket; `Ok(None)` when it does not exist.
pub fn open(js: &nats::jetstream::JetStream, bucket: &str) -> Result<Option<Store>, String> {
    match js.key_value(bucket) {
        Ok(store) => Ok(Some(store)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(format!("cannot open bucket {bucket}: {e}")),
    }
}

fn is_not_found(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<nats::jetstream::Error>())
        .is_some_and(|je| je.error_code() == nats::jetstream::ErrorCode::StreamNotFound)
}

/// Every live entry of a bucket, by key.
fn entries(store: &Store) -> Result<BTreeMap<String, nats::kv::Entry>, String> {
    let keys = store
        .keys()
        .map_err(|e| format!("listing {}: {e}", store.bucket()))?;
    let mut out = BTreeMap::new();
    for key in keys {
        if let Some(entry) = store
            .entry(&key)
            .map_err(|e| format!("reading {key}: {e}"))?
        {
            if entry.operation == nats::kv::Operation::Put {
                out.insert(key, entry);
            }
        }
    }
    Ok(out)
}

/// How long ago a message was stored.
pub fn age(entry: &nats::kv::Entry) -> Option<Duration> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos() as i128;
    let nanos = now - entry.created.unix_timestamp_nanos();
    Some(Duration::from_nanos(nanos.max(0) as u64))
}

/// Reads `group`'s buckets. Errors when the group has never run.
pub fn read(nc: &nats::Connection, group: &str) -> Result<Snapshot, String> {
    let names = BucketNames::for_group(group).map_err(|e| e.to_string())?;
    let js = nats::jetstream::new(nc.clone());
    let Some(workers) = open(&js, &names.workers)? else {
        return Err(format!(
            "group {group} not found (no bucket {})",
            names.workers
        ));
    };
    let mut snap = Snapshot {
        group: group.to_string(),
        workers: Vec::new(),
        leader: None,
        meta: None,
        source: None,
        corrupt: Vec::new(),
        control: ControlRecord::default(),
    };
    let mut corrupt = |bucket: &str, key: &str, e: parti::Error| {
        snap.corrupt
            .push((bucket.to_string(), key.to_string(), e.to_string()));
    };
    let mut rows: BTreeMap<String, WorkerRow> = BTreeMap::new();
    for (key, entry) in entries(&workers)? {
        if key.starts_with('_') {
            continue; // control keys such as refresh requests
        }
        let record = match wire::decode::<WorkerRecord>(&names.workers, &key, &entry.value) {
            Ok(r) => Some(r),
            Err(e) => {
                corrupt(&names.workers, &key, e);
                None
            }
        };
        rows.insert(
            key.clone(),
            WorkerRow {
                id: key,
                record,
                heartbeat_age: age(&entry),
                assignment: None,
            },
        );
    }
    let mut leader = None;
    if let Some(store) = open(&js, &names.leader)? {
        if let Some(entry) = entries(&store)?.remove(LEADER_KEY) {
            match wire::decode::<LeaderRecord>(&names.leader, &entry.key, &entry.value) {
                Ok(r) => leader = Some((r, entry.revision)),
                Err(e) => corrupt(&names.leader, &entry.key, e),
            }
        }
    }
    let mut meta = None;
    let mut control = ControlRecord::default();
    if let Some(store) = open(&js, &names.assignments)? {
        for (key, entry) in entries(&store)? {
            if key == META_KEY {
                match wire::decode::<MetaRecord>(&names.assignments, &key, &entry.value) {
                    Ok(m) => meta = Some(m),
                    Err(e) => corrupt(&names.assignments, &key, e),
                }
                continue;
            }
            if key == CONTROL_KEY {
                match wire::decode::<ControlRecord>(&names.assignments, &key, &entry.value) {
                    Ok(c) => control = c,
                    Err(e) => corrupt(&names.assignments, &key, e),
                }
                continue;
            }
            match wire::decode::<AssignmentRecord>(&names.assignments, &key, &entry.value) {
                Ok(a) => {
                    let row = rows.entry(key.clone()).or_insert_with(|| WorkerRow {
                        id: key,
                        record: None,
                        heartbeat_age: None,
                        assignment: None,
                    });
                    row.assignment = Some(a);
                }
                Err(e) => corrupt(&names.assignments, &key, e),
            }
        }
    }
    let mut source = None;
    let source_bucket = KvSource::bucket_name(group).map_err(|e| e.to_string())?;
    if let Some(store) = open(&js, &source_bucket)? {
        source = Some(entries(&store)?.into_keys().collect());
    }
    snap.workers = rows.into_values().collect();
    snap.leader = leader;
    snap.meta = meta;
    snap.control = control;
    snap.source = source;
    Ok(snap)
}
