//! Requests with a deadline over one `nats::Connection`.
//!
//! The crate's writer thread flushes at most every 5 ms (trap 7) and its
//! `flush_timeout` waits for the PONG without any deadline, so a caller must
//! never flush on its own thread. A small flusher thread does it instead:
//! callers publish, nudge the flusher and wait on their reply subscription
//! with a deadline. If the flusher is stuck waiting for a PONG during an
//! outage, callers still return on time; only latency falls back to the
//! crate's own 5 ms flushing.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nats::{HeaderMap, Message};
use serde::Deserialize;
use serde_json::Value;

use crate::store::KvError;

/// An error object in a JetStream API reply or publish ack.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct JsError {
    #[serde(default)]
    pub code: u64,
    #[serde(default)]
    pub err_code: u64,
    #[serde(default)]
    pub description: String,
}

impl JsError {
    pub(crate) fn into_kv(self, what: &str) -> KvError {
        KvError::Other(format!(
            "{what}: JetStream error {} ({}): {}",
            self.err_code, self.code, self.description
        ))
    }
}

/// JetStream's `StreamWrongLastSequence`: an expected-sequence check failed.
pub(crate) const ERR_WRONG_LAST_SEQUENCE: u64 = 10071;
/// `StreamNotFound`.
pub(crate) const ERR_STREAM_NOT_FOUND: u64 = 10059;
/// How [`Link::request`] starts the message of a request nobody answered
/// (for a KV write: JetStream is down or the bucket's stream is missing).
pub(crate) const NO_RESPONDERS: &str = "no responders for";
/// `StreamNameExist` with a different config.
pub(crate) const ERR_STREAM_EXISTS: u64 = 10058;
/// `NoMessageFound` (STREAM.MSG.GET).
pub(crate) const ERR_NO_MESSAGE: u64 = 10037;

/// A connection, its operation deadline and its flusher.
pub(crate) struct Link {
    pub conn: nats::Connection,
    pub op_timeout: Duration,
    flush_kick: Sender<()>,
    closed: Arc<AtomicBool>,
}

impl Link {
    pub(crate) fn new(conn: nats::Connection, op_timeout: Duration) -> Self {
        let (flush_kick, kicks) = crossbeam_channel::bounded(1);
        let flusher_conn = conn.clone();
        let closed = Arc::new(AtomicBool::new(false));
        let flusher_closed = closed.clone();
        let spawned = thread::Builder::new()
            .name("parti-kv-flush".into())
            .spawn(move || flusher(flusher_conn, kicks, op_timeout, flusher_closed));
        if let Err(e) = spawned {
            // Still correct without it, only slower (5 ms writer cadence).
            log::warn!("parti: cannot start the NATS flusher thread: {e}");
        }
        Link {
            conn,
            op_timeout,
            flush_kick,
            closed,
        }
    }

    /// Ends the flusher thread (after the flush it may be in).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.kick();
    }

    /// Asks the flusher to push buffered bytes out now.
    pub(crate) fn kick(&self) {
        // Full: a flush is already due. Disconnected: no flusher thread.
        let _ = self.flush_kick.try_send(());
    }

    /// Publishes without waiting for anything (fire and forget).
    pub(crate) fn publish(&self, subject: &str, headers: Option<&HeaderMap>, body: &[u8]) {
        if self
            .conn
            .publish_with_reply_or_headers(subject, None, headers, body)
            .is_ok()
        {
            self.kick();
        }
    }

    /// A fresh reply subject under `prefix` (see [`wire::inbox_prefix`]).
    ///
    /// [`wire::inbox_prefix`]: super::wire::inbox_prefix
    pub(crate) fn inbox(&self, prefix: &str) -> String {
        scoped_inbox(&self.conn, prefix)
    }

    /// The deadline of an operation starting now.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + self.op_timeout
    }

    /// One request, its reply coming to a subject under `inbox_prefix`,
    /// answered by `deadline` or reported as [`KvError::Timeout`] (outcome
    /// unknown) or [`KvError::Unavailable`].
    pub(crate) fn request(
        &self,
        op: &'static str,
        inbox_prefix: &str,
        subject: &str,
        headers: Option<&HeaderMap>,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Message, KvError> {
        let inbox = self.inbox(inbox_prefix);
        let sub = self.conn.subscribe(&inbox).map_err(unavailable)?;
        // With `connect_options()` the reconnect buffer is empty, so a publish
        // while disconnected fails here and the write was certainly not sent.
        self.conn
            .publish_with_reply_or_headers(subject, Some(&inbox), headers, body)
            .map_err(unavailable)?;
        self.kick();
        match sub.next_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(msg) if msg.is_no_responders() => Err(KvError::Unavailable(format!(
                "{NO_RESPONDERS} {subject} (JetStream down or stream missing)"
            ))),
            Ok(msg) => Ok(msg),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(KvError::Timeout {
                op,
                after: self.op_timeout,
            }),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A JetStream API call: JSON in, JSON out; an `error` member is returned
    /// as the inner `Err`.
    pub(crate) fn api(
        &self,
        op: &'static str,
        inbox_prefix: &str,
        subject: &str,
        body: &Value,
        deadline: Instant,
    ) -> Result<Result<Value, JsError>, KvError> {
        let body = body.to_string();
        let msg = self.request(op, inbox_prefix, subject, None, body.as_bytes(), deadline)?;
        let value: Value = serde_json::from_slice(&msg.data)
            .map_err(|e| KvError::Other(format!("{op}: unreadable reply from server: {e}")))?;
        if let Some(err) = value.get("error") {
            let err = JsError::deserialize(err)
                .map_err(|e| KvError::Other(format!("{op}: unreadable error reply: {e}")))?;
            return Ok(Err(err));
        }
        Ok(Ok(value))
    }
}

/// `_INBOX.<unique>` of the crate, moved under `prefix`.
pub(crate) fn scoped_inbox(conn: &nats::Connection, prefix: &str) -> String {
    let inbox = conn.new_inbox();
    let unique = inbox.strip_prefix("_INBOX.").unwrap_or(&inbox);
    format!("{prefix}{unique}")
}

/// The crate's `request_with_headers_or_timeout`, with the reply subject
/// under `prefix` instead of `_INBOX.`; "no responders" is
/// `ErrorKind::NotFound` as there.
pub(crate) fn scoped_request(
    conn: &nats::Connection,
    prefix: &str,
    subject: &str,
    headers: Option<&HeaderMap>,
    timeout: Duration,
    body: &[u8],
) -> io::Result<Message> {
    let inbox = scoped_inbox(conn, prefix);
    let sub = conn.subscribe(&inbox)?;
    conn.publish_with_reply_or_headers(subject, Some(&inbox), headers, body)?;
    let msg = sub.next_timeout(timeout)?;
    if msg.is_no_responders() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no responders"));
    }
    Ok(msg)
}

fn unavailable(e: io::Error) -> KvError {
    KvError::Unavailable(format!("NATS connection: {e}"))
}

fn flusher(
    conn: nats::Connection,
    kicks: Receiver<()>,
    op_timeout: Duration,
    closed: Arc<AtomicBool>,
) {
    // Ends when the link is closed or the last `Link` (and so the sender) is
    // dropped.
    while kicks.recv().is_ok() && !closed.load(Ordering::SeqCst) {
        // The result does not matter: callers wait on their own replies.
        let _ = conn.flush_timeout(op_timeout);
    }
}
