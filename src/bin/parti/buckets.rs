//! Stream information of a group's buckets, read without changing anything.
#![allow(deprecated)] // every item of the `nats` 0.26 crate is deprecated

use std::time::Duration;

use serde_json::Value;

/// How long the server may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// JetStream's `StreamNotFound`.
const ERR_STREAM_NOT_FOUND: u64 = 10059;

/// The `STREAM.INFO` reply of a bucket's stream (`config`, `state`,
/// `cluster`); `Ok(None)` when the bucket does not exist.
pub fn stream_info(nc: &nats::Connection, bucket: &str) -> Result<Option<Value>, String> {
    let subject = format!("$JS.API.STREAM.INFO.KV_{bucket}");
    let reply = nc
        .request_timeout(&subject, b"", TIMEOUT)
        .map_err(|e| format!("stream info of {bucket}: {e}"))?;
    let info: Value = serde_json::from_slice(&reply.data)
        .map_err(|e| format!("stream info of {bucket}: unreadable reply: {e}"))?;
    match info.get("error") {
        None => Ok(Some(info)),
        Some(e) if e["err_code"].as_u64() == Some(ERR_STREAM_NOT_FOUND) => Ok(None),
        Some(e) => Err(format!("stream info of {bucket}: {e}")),
    }
}

/// A bucket's replica count from its stream info.
pub fn replicas(info: &Value) -> usize {
    info["config"]["num_replicas"]
        .as_u64()
        .map_or(1, |n| usize::try_from(n).unwrap_or(1).max(1))
}

/// A bucket's max age from its stream info (`None`: keys never expire).
pub fn max_age(info: &Value) -> Option<Duration> {
    info["config"]["max_age"]
        .as_u64()
        .filter(|n| *n > 0)
        .map(Duration::from_nanos)
}
