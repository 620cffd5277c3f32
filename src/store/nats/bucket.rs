//! Bucket-level calls: idempotent creation with a config check, and listing.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use super::consumer::{self, nanos, Spec, Start};
use super::link::{Link, ERR_STREAM_EXISTS, ERR_STREAM_NOT_FOUND};
use super::wire::{self, Op};
use crate::store::{is_valid_bucket, BucketConfig, KvError};

/// The crate's KV default: a duplicate window of two minutes, shortened to
/// `max_age` when that is smaller (the server requires it).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

#[derive(Deserialize)]
struct StreamInfo {
    config: StreamConfig,
    #[serde(default)]
    created: String,
    #[serde(default)]
    state: StreamState,
}

#[derive(Deserialize, Default)]
struct StreamState {
    #[serde(default)]
    last_seq: u64,
}

/// What tells one life of a stream from the next: the server's creation
/// time (a deleted and recreated bucket, or a server back on an empty
/// store, has a new one) and the last sequence (a rolled-back store
/// reports one lower than what was already seen).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Life {
    pub created: String,
    pub last_seq: u64,
}

#[derive(Deserialize)]
struct StreamConfig {
    #[serde(default)]
    max_age: u64,
    #[serde(default = "one")]
    num_replicas: usize,
    #[serde(default)]
    subjects: Vec<String>,
}

fn one() -> usize {
    1
}

/// Creates the bucket's stream if missing, or checks that the existing one
/// matches `config`. `Ok(true)`: this call created it.
pub(crate) fn open(link: &Link, config: &BucketConfig) -> Result<bool, KvError> {
    if !is_valid_bucket(&config.name) {
        return Err(KvError::Invalid(format!(
            "invalid bucket name {:?}",
            config.name
        )));
    }
    if config.replicas == 0 {
        return Err(KvError::Invalid("replicas must be at least 1".into()));
    }
    let deadline = link.deadline();
    let stream = wire::stream_name(&config.name);
    let inbox = wire::inbox_prefix(&config.name);
    if let Some(existing) = info(link, &inbox, &stream, deadline)? {
        return compare(config, &existing.config).map(|()| false);
    }
    let max_age = config.max_age.map_or(0, nanos);
    let window = config
        .max_age
        .map_or(DUPLICATE_WINDOW, |age| age.min(DUPLICATE_WINDOW));
    let body = json!({
        "name": stream,
        "subjects": [wire::key_subject(&config.name, ">")],
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_msgs_per_subject": 1,
        "max_msg_size": -1,
        "max_age": max_age,
        "storage": "file",
        "discard": "new",
        "num_replicas": config.replicas,
        "duplicate_window": nanos(window),
        "allow_rollup_hdrs": true,
        "deny_delete": true,
        "deny_purge": false,
        "allow_direct": true,
    });
    let subject = format!("$JS.API.STREAM.CREATE.{stream}");
    match link.api("open", &inbox, &subject, &body, deadline)? {
        Ok(_) => Ok(true),
        // Someone created it first, with another config.
        Err(e) if e.err_code == ERR_STREAM_EXISTS => match info(link, &inbox, &stream, deadline)? {
            Some(existing) => compare(config, &existing.config).map(|()| false),
            None => Err(e.into_kv("open")),
        },
        Err(e) => Err(e.into_kv("open")),
    }
}

/// The stream's current life (`None`: there is no such stream).
pub(crate) fn life(
    link: &Link,
    inbox: &str,
    stream: &str,
    deadline: Instant,
) -> Result<Option<Life>, KvError> {
    Ok(info(link, inbox, stream, deadline)?.map(|i| Life {
        created: i.created,
        last_seq: i.state.last_seq,
    }))
}

fn info(
    link: &Link,
    inbox: &str,
    stream: &str,
    deadline: Instant,
) -> Result<Option<StreamInfo>, KvError> {
    let subject = format!("$JS.API.STREAM.INFO.{stream}");
    match link.api("open", inbox, &subject, &json!({}), deadline)? {
        Ok(value) => StreamInfo::deserialize(value)
            .map(Some)
            .map_err(|e| KvError::Other(format!("open: unreadable stream info: {e}"))),
        Err(e) if e.err_code == ERR_STREAM_NOT_FOUND => Ok(None),
        Err(e) => Err(e.into_kv("open")),
    }
}

fn compare(want: &BucketConfig, have: &StreamConfig) -> Result<(), KvError> {
    let mut diffs = Vec::new();
    let want_age = want.max_age.map_or(0, nanos);
    if have.max_age != want_age {
        diffs.push(format!(
            "max_age is {:?}, wanted {:?}",
            (have.max_age != 0).then(|| Duration::from_nanos(have.max_age)),
            want.max_age
        ));
    }
    if have.num_replicas.max(1) != want.replicas {
        diffs.push(format!(
            "replicas is {}, wanted {}",
            have.num_replicas, want.replicas
        ));
    }
    let subject = wire::key_subject(&want.name, ">");
    if !have.subjects.contains(&subject) {
        diffs.push(format!(
            "subjects are {:?}, wanted {subject:?}",
            have.subjects
        ));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(KvError::Invalid(format!(
            "bucket {} exists with another configuration: {}",
            want.name,
            diffs.join("; ")
        )))
    }
}

/// The keys with a live value: a short-lived consumer delivering the last
/// message of every key, headers only; markers are left out.
pub(crate) fn live_keys(
    link: &Link,
    bucket: &str,
    deadline: Instant,
) -> Result<Vec<String>, KvError> {
    let stream = wire::stream_name(bucket);
    let filter = wire::key_subject(bucket, ">");
    let prefix = format!("$KV.{bucket}.");
    let inbox = wire::inbox_prefix(bucket);
    let deliver = link.inbox(&inbox);
    let sub = link
        .conn
        .subscribe(&deliver)
        .map_err(|e| KvError::Unavailable(format!("keys: NATS connection: {e}")))?;
    let spec = Spec {
        stream: &stream,
        filter: &filter,
        deliver: &deliver,
        inbox: &inbox,
        start: Start::LastPerSubject,
        headers_only: true,
        heartbeat: None,
    };
    let created = consumer::create(link, "keys", &spec, deadline)?;
    let mut keys = Vec::new();
    let mut pending = created.num_pending;
    while pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = sub.next_timeout(left).map_err(|_| KvError::Timeout {
            op: "keys",
            after: link.op_timeout,
        });
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => {
                consumer::delete_soon(link, &stream, &created.name);
                return Err(e);
            }
        };
        let Some(info) = msg.reply.as_deref().and_then(wire::parse_ack_subject) else {
            continue;
        };
        pending = info.pending;
        if wire::op_of(msg.headers.as_ref()) == Op::Put {
            if let Some(key) = msg.subject.strip_prefix(&prefix) {
                keys.push(key.to_string());
            }
        }
    }
    consumer::delete_soon(link, &stream, &created.name);
    keys.sort();
    Ok(keys)
}
