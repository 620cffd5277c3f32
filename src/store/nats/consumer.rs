//! Ephemeral push consumers on a bucket's stream: used by watches and by
//! `keys()`. We create them through the JetStream API ourselves so every call
//! has a deadline.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use super::link::Link;
use crate::store::KvError;

/// Where a consumer starts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Start {
    /// The last message of every key (the initial replay).
    LastPerSubject,
    /// Everything from this stream sequence on (a re-watch).
    AtSeq(u64),
}

/// What to create.
pub(crate) struct Spec<'a> {
    pub stream: &'a str,
    pub filter: &'a str,
    pub deliver: &'a str,
    /// Where the API's reply comes ([`wire::inbox_prefix`]).
    ///
    /// [`wire::inbox_prefix`]: super::wire::inbox_prefix
    pub inbox: &'a str,
    pub start: Start,
    pub headers_only: bool,
    /// Idle heartbeat and flow control (long-lived watches only).
    pub heartbeat: Option<Duration>,
}

/// A created consumer.
#[derive(Debug, Deserialize)]
pub(crate) struct Created {
    pub name: String,
    #[serde(default)]
    pub num_pending: u64,
}

/// Unused push consumers (nobody subscribed to their deliver subject) are
/// removed by the server after this long; it cleans up after a delete
/// request that never arrived.
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(5);

pub(crate) fn create(
    link: &Link,
    op: &'static str,
    spec: &Spec<'_>,
    deadline: Instant,
) -> Result<Created, KvError> {
    let mut config = json!({
        "deliver_subject": spec.deliver,
        "filter_subject": spec.filter,
        "ack_policy": "none",
        "replay_policy": "instant",
        "headers_only": spec.headers_only,
        "mem_storage": true,
        "num_replicas": 1,
        "inactive_threshold": nanos(INACTIVE_THRESHOLD),
    });
    match spec.start {
        Start::LastPerSubject => config["deliver_policy"] = json!("last_per_subject"),
        Start::AtSeq(seq) => {
            config["deliver_policy"] = json!("by_start_sequence");
            config["opt_start_seq"] = json!(seq);
        }
    }
    if let Some(hb) = spec.heartbeat {
        config["idle_heartbeat"] = json!(nanos(hb));
        config["flow_control"] = json!(true);
    }
    let body = json!({ "stream_name": spec.stream, "config": config });
    let subject = format!("$JS.API.CONSUMER.CREATE.{}", spec.stream);
    match link.api(op, spec.inbox, &subject, &body, deadline)? {
        Ok(reply) => Created::deserialize(reply)
            .map_err(|e| KvError::Other(format!("{op}: unreadable consumer reply: {e}"))),
        Err(e) if e.err_code == super::link::ERR_STREAM_NOT_FOUND => {
            Err(KvError::NotFound(spec.stream.to_string()))
        }
        Err(e) => Err(e.into_kv(op)),
    }
}

/// Asks the server to delete a consumer without waiting for the answer: it
/// must never block a caller or the watch hub. If the request is lost, the
/// inactivity threshold removes the consumer anyway.
pub(crate) fn delete_soon(link: &Link, stream: &str, name: &str) {
    link.publish(
        &format!("$JS.API.CONSUMER.DELETE.{stream}.{name}"),
        None,
        b"",
    );
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
