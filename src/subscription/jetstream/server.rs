//! The JetStream API calls of [`JetStreamConsumer`](super::JetStreamConsumer):
//! requests with deadlines, the per-partition consumer's name, and resetting
//! that consumer when its partition is granted.

use std::io;
use std::time::Duration;

use serde_json::{json, Value};

use super::link::Link;
use super::JetStreamConfig;
use crate::{Error, Partition};

/// A failed API request: the error to report, and the server's JetStream
/// error code when the server answered with one.
pub(super) struct ApiError {
    pub code: Option<u64>,
    pub error: Error,
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Error {
        e.error
    }
}

/// 10014: consumer not found.
const CONSUMER_NOT_FOUND: u64 = 10014;
/// 10099 / 10100: a work-queue stream refuses a consumer whose filter
/// overlaps another consumer's.
const WORKQUEUE_OVERLAP: [u64; 2] = [10099, 10100];

/// A JetStream API request with a deadline; an `error` member becomes an
/// [`ApiError`] with the server's code and description.
pub(super) fn api(
    conn: &Link,
    what: &'static str,
    subject: &str,
    body: &Value,
    timeout: Duration,
) -> Result<Value, ApiError> {
    let fail = |code: Option<u64>, reason: String| ApiError {
        code,
        error: Error::Subscription { what, reason },
    };
    let msg = conn
        .request(subject, body.to_string().as_bytes(), timeout)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::TimedOut {
                fail(None, format!("{subject}: no answer within {timeout:?} (NATS unreachable, or no permission to publish there)"))
            } else {
                fail(None, format!("{subject}: {e}"))
            }
        })?;
    if msg.is_no_responders() {
        return Err(fail(
            None,
            format!("{subject}: no responders (JetStream not enabled?)"),
        ));
    }
    let value: Value = serde_json::from_slice(&msg.data)
        .map_err(|e| fail(None, format!("{subject}: unreadable reply: {e}")))?;
    if let Some(err) = value.get("error") {
        let code = err["err_code"].as_u64();
        return Err(fail(
            code,
            format!(
                "JetStream error {} ({}): {}",
                err["err_code"],
                err["code"],
                err["description"].as_str().unwrap_or_default()
            ),
        ));
    }
    Ok(value)
}

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Checks that the stream exists and is a work queue.
pub(super) fn check_stream(conn: &Link, config: &JetStreamConfig) -> Result<(), Error> {
    let info = api(
        conn,
        "stream info",
        &format!("$JS.API.STREAM.INFO.{}", config.stream),
        &json!({}),
        config.op_timeout,
    )?;
    let retention = info["config"]["retention"].as_str().unwrap_or_default();
    if retention != "workqueue" {
        return Err(Error::InvalidConfig {
            field: "stream",
            reason: format!(
                "stream {} has retention {retention:?}; the consumer helper needs \"workqueue\"",
                config.stream
            ),
        });
    }
    Ok(())
}

/// Longest consumer name we make; longer ones end in a hash instead.
const MAX_NAME: usize = 128;

/// The durable consumer of one partition: `<prefix>_<partition>`, with every
/// byte of the id outside `[A-Za-z0-9-]` written `_xx` (hex), so distinct
/// ids give distinct names that are valid subject tokens and file names.
///
/// Every worker derives the same name, which is what lets a partition's new
/// owner find (and reset) the consumer its previous owner used.
pub(super) fn consumer_name(prefix: &str, partition: &Partition) -> String {
    let mut name = format!("{prefix}_");
    for b in partition.id().bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("_{b:02x}"));
        }
    }
    if name.len() > MAX_NAME {
        let hash = xxhash_rust::xxh3::xxh3_64(name.as_bytes());
        name.truncate(MAX_NAME - 17);
        name.push_str(&format!("_{hash:016x}"));
    }
    name
}

/// Whether some subject matches both NATS subject filters.
pub(super) fn overlaps(a: &str, b: &str) -> bool {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Gives a partition a fresh consumer: deletes the one its previous owner
/// pulled from (same name) and creates it again.
///
/// Called by the partition's new owner, when the previous one is certainly
/// done with it (it released the partition, or it was declared dead and is
/// fenced). Recreating rather than reusing matters: on a work-queue stream a
/// new consumer with `deliver_policy: all` starts at the partition's oldest
/// unacked message, so what a crashed owner had received but not acked comes
/// back at once and in order, instead of after `ack_wait`; and nothing of
/// the old consumer (its pending pull requests, its redelivery list) is left.
///
/// A consumer of another name that still filters this partition (a worker
/// configured with another prefix, or a consumer left by an earlier version
/// with one consumer per worker) makes the stream refuse the create; it is
/// then found by listing and deleted, since its holder does not own the
/// partition any more.
pub(super) fn reset_consumer(
    conn: &Link,
    config: &JetStreamConfig,
    name: &str,
    subject: &str,
) -> Result<(), Error> {
    delete_consumer(conn, config, name)?;
    match create_consumer(conn, config, name, subject) {
        Err(e) if e.code.is_some_and(|c| WORKQUEUE_OVERLAP.contains(&c)) => {
            for other in overlapping_consumers(conn, config, subject)? {
                log::info!(
                    "parti: deleting consumer {other} of stream {}: it still filters {subject}, which this worker now owns",
                    config.stream
                );
                delete_consumer(conn, config, &other)?;
            }
            create_consumer(conn, config, name, subject).map_err(Error::from)
        }
        other => other.map_err(Error::from),
    }
}

fn delete_consumer(conn: &Link, config: &JetStreamConfig, name: &str) -> Result<(), Error> {
    match api(
        conn,
        "consumer delete",
        &format!("$JS.API.CONSUMER.DELETE.{}.{name}", config.stream),
        &json!({}),
        config.op_timeout,
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.code == Some(CONSUMER_NOT_FOUND) => Ok(()),
        Err(e) => Err(e.error),
    }
}

fn create_consumer(
    conn: &Link,
    config: &JetStreamConfig,
    name: &str,
    subject: &str,
) -> Result<(), ApiError> {
    let body = json!({
        "stream_name": config.stream,
        "config": {
            "durable_name": name,
            "ack_policy": "explicit",
            "deliver_policy": "all",
            "filter_subject": subject,
            "ack_wait": nanos(config.ack_wait),
            "inactive_threshold": nanos(config.inactive_threshold),
            "max_ack_pending": config.batch * 4,
        }
    });
    api(
        conn,
        "consumer create",
        &format!("$JS.API.CONSUMER.CREATE.{}.{name}", config.stream),
        &body,
        config.op_timeout,
    )
    .map(drop)
}

/// Names of the stream's consumers whose filter overlaps `subject`.
fn overlapping_consumers(
    conn: &Link,
    config: &JetStreamConfig,
    subject: &str,
) -> Result<Vec<String>, Error> {
    let mut found = Vec::new();
    let mut offset = 0u64;
    // Bounded: a stream has far fewer than 1000 pages of consumers.
    for _ in 0..1000 {
        let page = api(
            conn,
            "consumer list",
            &format!("$JS.API.CONSUMER.LIST.{}", config.stream),
            &json!({ "offset": offset }),
            config.op_timeout,
        )?;
        let consumers = page["consumers"].as_array().cloned().unwrap_or_default();
        for c in &consumers {
            let cfg = &c["config"];
            let mut filters: Vec<&str> = cfg["filter_subjects"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            filters.extend(cfg["filter_subject"].as_str());
            // No filter at all: the consumer takes the whole stream.
            let hit = filters.is_empty() || filters.iter().any(|f| overlaps(f, subject));
            if let (true, Some(name)) = (hit, c["name"].as_str()) {
                found.push(name.to_string());
            }
        }
        offset += consumers.len() as u64;
        let total = page["total"].as_u64().unwrap_or(0);
        if consumers.is_empty() || offset >= total {
            break;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_valid() {
        let a = consumer_name("orders", &Partition::new("a.b"));
        let b = consumer_name("orders", &Partition::new("a_b"));
        assert_eq!(a, "orders_a_2eb");
        assert_eq!(b, "orders_a_5fb");
        assert_eq!(
            consumer_name("orders", &Partition::new("p-7")),
            "orders_p-7"
        );
        let long = consumer_name("orders", &Partition::new("x".repeat(300)));
        assert!(long.len() <= MAX_NAME, "{}", long.len());
        assert_ne!(
            long,
            consumer_name("orders", &Partition::new("x".repeat(301)))
        );
    }

    #[test]
    fn filter_overlap() {
        assert!(overlaps("orders.1.>", "orders.1.>"));
        assert!(overlaps("orders.>", "orders.1.>"));
        assert!(overlaps("orders.*.x", "orders.1.>"));
        assert!(!overlaps("orders.1.>", "orders.2.>"));
        assert!(!overlaps("orders.1", "orders.1.>"));
        assert!(overlaps("orders.1", "orders.*"));
    }
}
