//! Subjects, headers and reply formats of JetStream KV, parsed by hand so the
//! crate's lossy parsers (trap 3) are never involved.

use nats::HeaderMap;
use serde::Deserialize;

use super::link::JsError;
use crate::names::BucketNames;
use crate::source::KvSource;
use crate::store::{KvError, Revision};

/// Header naming the operation of a KV message.
pub(crate) const KV_OPERATION: &str = "KV-Operation";
/// Header for compare-and-set on the key's last sequence.
pub(crate) const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";

/// The stream behind a bucket.
pub(crate) fn stream_name(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// The subject a key is stored under.
pub(crate) fn key_subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

/// The reply-subject prefix of every request parti makes for `bucket` and
/// of its watch deliveries: `_INBOX.parti.<group>.` for the buckets of a
/// group (its workers, leader, assignments and KV-source buckets), so a
/// worker needs to subscribe only there; `_INBOX.parti-bucket.<bucket>.`
/// for any other bucket (a second token no group prefix can equal).
pub(crate) fn inbox_prefix(bucket: &str) -> String {
    match group_of(bucket) {
        Some(group) => group_inbox_prefix(group),
        None => format!("_INBOX.parti-bucket.{bucket}."),
    }
}

/// The reply-subject prefix of `group`'s buckets (see [`inbox_prefix`]).
pub(crate) fn group_inbox_prefix(group: &str) -> String {
    format!("_INBOX.parti.{group}.")
}

/// The group whose bucket this is, if it is one of a group's buckets.
fn group_of(bucket: &str) -> Option<&str> {
    let rest = bucket.strip_prefix("parti-")?;
    let group = ["-workers", "-leader", "-assignments", "-partitions"]
        .iter()
        .find_map(|suffix| rest.strip_suffix(suffix))?;
    // The names themselves come from where they are defined, not from a copy
    // of their format here.
    let names = BucketNames::for_group(group).ok()?;
    let ours = [names.workers, names.leader, names.assignments]
        .into_iter()
        .chain(KvSource::bucket_name(group).ok())
        .any(|b| b == bucket);
    ours.then_some(group)
}

/// What a KV message means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Put,
    /// A delete or purge marker.
    Delete,
}

/// Reads the KV operation from a raw header block or parsed headers.
pub(crate) fn op_of(headers: Option<&HeaderMap>) -> Op {
    let value = headers.and_then(|h| {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(KV_OPERATION))
            .and_then(|(_, v)| v.iter().next().cloned())
    });
    op_from_value(value.as_deref())
}

fn op_from_value(value: Option<&str>) -> Op {
    match value.map(str::trim) {
        Some("DEL") | Some("PURGE") => Op::Delete,
        _ => Op::Put,
    }
}

/// The reply to a publish into a stream.
#[derive(Deserialize)]
struct PubAck {
    #[serde(default)]
    stream: String,
    #[serde(default)]
    seq: u64,
    error: Option<JsError>,
}

/// Why a write was refused, or its new revision.
pub(crate) enum AckOutcome {
    Written(Revision),
    WrongLastSequence,
}

/// Parses a publish ack. An ack without a sequence is an error, never a
/// success (trap 3: newer error codes decode as `seq: 0` in the crate).
pub(crate) fn parse_ack(op: &str, stream: &str, data: &[u8]) -> Result<AckOutcome, KvError> {
    let ack: PubAck = serde_json::from_slice(data).map_err(|e| {
        KvError::Other(format!(
            "{op}: unreadable ack ({e}): {}",
            String::from_utf8_lossy(data)
        ))
    })?;
    if let Some(err) = ack.error {
        if err.err_code == super::link::ERR_WRONG_LAST_SEQUENCE {
            return Ok(AckOutcome::WrongLastSequence);
        }
        return Err(err.into_kv(op));
    }
    if ack.seq == 0 {
        return Err(KvError::Other(format!(
            "{op}: ack without a sequence: {}",
            String::from_utf8_lossy(data)
        )));
    }
    if ack.stream != stream {
        return Err(KvError::Other(format!(
            "{op}: ack from stream {:?}, expected {stream:?}",
            ack.stream
        )));
    }
    Ok(AckOutcome::Written(ack.seq))
}

/// The last message stored under a subject (value or marker).
pub(crate) struct StoredMsg {
    pub seq: Revision,
    pub op: Op,
    pub data: Vec<u8>,
}

#[derive(Deserialize)]
struct MsgGetReply {
    message: RawStored,
}

#[derive(Deserialize)]
struct RawStored {
    seq: u64,
    #[serde(default)]
    hdrs: Option<String>,
    #[serde(default)]
    data: Option<String>,
}

/// Decodes a `$JS.API.STREAM.MSG.GET` reply (JSON with base64 fields).
pub(crate) fn parse_msg_get(value: serde_json::Value) -> Result<StoredMsg, KvError> {
    let reply: MsgGetReply = serde_json::from_value(value)
        .map_err(|e| KvError::Other(format!("get: unreadable reply: {e}")))?;
    let decode = |field: Option<String>| -> Result<Vec<u8>, KvError> {
        match field {
            None => Ok(Vec::new()),
            Some(text) => base64::decode(text)
                .map_err(|e| KvError::Other(format!("get: bad base64 in reply: {e}"))),
        }
    };
    let hdrs = decode(reply.message.hdrs)?;
    Ok(StoredMsg {
        seq: reply.message.seq,
        op: op_from_header_block(&hdrs),
        data: decode(reply.message.data)?,
    })
}

fn op_from_header_block(block: &[u8]) -> Op {
    let text = String::from_utf8_lossy(block);
    let value = text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case(KV_OPERATION)
            .then(|| value.to_string())
    });
    op_from_value(value.as_deref())
}

/// The position of a message delivered by a push consumer, from its
/// `$JS.ACK…` reply subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeliveryInfo {
    pub stream_seq: u64,
    pub consumer_seq: u64,
    pub pending: u64,
}

/// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`
/// and the newer form with domain and account hash (and an optional token
/// at the end).
pub(crate) fn parse_ack_subject(reply: &str) -> Option<DeliveryInfo> {
    let tokens: Vec<&str> = reply.split('.').collect();
    if tokens.len() < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
        return None;
    }
    // Old form: 9 tokens; new form: 11 or 12 tokens (two more up front).
    let base = if tokens.len() == 9 { 2 } else { 4 };
    let num = |i: usize| tokens.get(base + i).and_then(|t| t.parse::<u64>().ok());
    Some(DeliveryInfo {
        stream_seq: num(3)?,
        consumer_seq: num(4)?,
        pending: num(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subject_both_forms() {
        let old = "$JS.ACK.KV_b.cons.1.42.7.1700000000.3";
        let want = DeliveryInfo {
            stream_seq: 42,
            consumer_seq: 7,
            pending: 3,
        };
        assert_eq!(parse_ack_subject(old), Some(want));
        let new = "$JS.ACK.dom.acchash.KV_b.cons.1.42.7.1700000000.3.rnd";
        assert_eq!(parse_ack_subject(new), Some(want));
        assert_eq!(parse_ack_subject("_INBOX.x"), None);
    }

    #[test]
    fn inbox_prefixes_are_scoped_to_the_group() {
        for bucket in [
            "parti-a-b-workers",
            "parti-a-b-leader",
            "parti-a-b-assignments",
            "parti-a-b-partitions",
        ] {
            assert_eq!(inbox_prefix(bucket), "_INBOX.parti.a-b.", "{bucket}");
        }
        assert_eq!(inbox_prefix("orders"), "_INBOX.parti-bucket.orders.");
        assert_eq!(
            inbox_prefix("parti-x-other"),
            "_INBOX.parti-bucket.parti-x-other."
        );
        assert_eq!(
            inbox_prefix("parti--workers"),
            "_INBOX.parti-bucket.parti--workers."
        );
    }

    #[test]
    fn ack_seq_zero_is_an_error() {
        let r = parse_ack("put", "KV_b", br#"{"stream":"KV_b","seq":0}"#);
        assert!(r.is_err());
        let r = parse_ack("put", "KV_b", br#"{"stream":"KV_b","seq":5}"#);
        assert!(matches!(r, Ok(AckOutcome::Written(5))));
        let r = parse_ack(
            "put",
            "KV_b",
            br#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}"#,
        );
        assert!(matches!(r, Ok(AckOutcome::WrongLastSequence)));
        let r = parse_ack(
            "put",
            "KV_b",
            br#"{"error":{"code":400,"err_code":10166,"description":"new"}}"#,
        );
        assert!(r.is_err());
    }

    #[test]
    fn header_block_ops() {
        assert_eq!(
            op_from_header_block(b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n"),
            Op::Delete
        );
        assert_eq!(
            op_from_header_block(b"NATS/1.0\r\nKV-Operation: PURGE\r\nNats-Rollup: sub\r\n\r\n"),
            Op::Delete
        );
        assert_eq!(op_from_header_block(b""), Op::Put);
    }
}
