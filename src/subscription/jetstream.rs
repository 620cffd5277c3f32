//! One durable JetStream pull consumer per worker, filtered to the owned
//! partitions.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::{check_partition, report, ErrorHook, SubjectTemplate};
use crate::{AssignmentChange, Error, Partition};

/// What a [`JetStreamConsumer`] handler returns on failure: the message is
/// negatively acknowledged (redelivered).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

type Handler = Box<dyn Fn(&Partition, &nats::Message) -> Result<(), HandlerError> + Send + Sync>;

/// Settings of a [`JetStreamConsumer`]. Start from [`JetStreamConfig::new`].
///
/// ```
/// use std::time::Duration;
/// use parti::subscription::JetStreamConfig;
/// let config = JetStreamConfig {
///     batch: 16,
///     ..JetStreamConfig::new("ORDERS", "orders-worker-0", "orders.{id}.>")
/// };
/// assert_eq!(config.fetch_wait, Duration::from_secs(1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// The stream. It must use work-queue retention (`retention:
    /// workqueue`): messages leave it when acked, which is what lets a
    /// partition's unfinished messages follow it to its next owner.
    pub stream: String,
    /// The durable consumer's name: stable per worker, e.g. the pod name of a
    /// StatefulSet (see `ManagerBuilder::preferred_id`). Two live workers must
    /// never share it.
    pub durable: String,
    /// The subject filter of a partition, with one `{id}`, e.g.
    /// `orders.{id}.>`.
    pub subject_template: String,
    /// Messages asked for per pull request (default 64).
    pub batch: usize,
    /// How long one pull request waits for messages (default 1 s); the loop
    /// notices `stop()` and assignment changes at least this often.
    pub fetch_wait: Duration,
    /// Deadline of each JetStream API request (default 2 s).
    pub op_timeout: Duration,
    /// The consumer's ack wait: an unacknowledged message is redelivered
    /// after this (default 30 s).
    pub ack_wait: Duration,
    /// The server deletes the consumer after this long without pull
    /// requests (default 30 s): a crashed worker's consumer goes away and
    /// stops holding its partitions' subjects. Until then a work-queue stream
    /// refuses the new owner's overlapping consumer (the helper retries), so
    /// this bounds how long a crashed worker's partitions wait. Keep it well
    /// above `fetch_wait` and your longest handler call.
    pub inactive_threshold: Duration,
    /// Retry period of a failed consumer update (default 1 s).
    pub retry_every: Duration,
    /// How long `apply` waits for a handler call under way on a removed
    /// partition before it reports the delay (default 10 s).
    pub release_timeout: Duration,
}

impl JetStreamConfig {
    /// Defaults for `stream`, `durable` and `subject_template`.
    pub fn new(
        stream: impl Into<String>,
        durable: impl Into<String>,
        subject_template: impl Into<String>,
    ) -> Self {
        JetStreamConfig {
            stream: stream.into(),
            durable: durable.into(),
            subject_template: subject_template.into(),
            batch: 64,
            fetch_wait: Duration::from_secs(1),
            op_timeout: Duration::from_secs(2),
            ack_wait: Duration::from_secs(30),
            inactive_threshold: Duration::from_secs(30),
            retry_every: Duration::from_secs(1),
            release_timeout: Duration::from_secs(10),
        }
    }

    fn validate(&self) -> Result<SubjectTemplate, Error> {
        let durations = [
            ("fetch_wait", self.fetch_wait),
            ("op_timeout", self.op_timeout),
            ("ack_wait", self.ack_wait),
            ("inactive_threshold", self.inactive_threshold),
            ("retry_every", self.retry_every),
            ("release_timeout", self.release_timeout),
        ];
        for (field, d) in durations {
            if d.is_zero() {
                return Err(Error::InvalidConfig {
                    field,
                    reason: "must be greater than zero".into(),
                });
            }
        }
        if self.batch == 0 {
            return Err(Error::InvalidConfig {
                field: "batch",
                reason: "must be greater than zero".into(),
            });
        }
        for (what, name) in [("stream", &self.stream), ("durable", &self.durable)] {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(Error::InvalidName {
                    name: name.clone(),
                    reason: format!("{what} names may use only [A-Za-z0-9_-]"),
                });
            }
        }
        SubjectTemplate::new(&self.subject_template)
    }
}

struct State {
    /// Owned partitions by id, with their subject filter.
    owned: BTreeMap<String, (Partition, String)>,
    /// Bumped by every change: messages fetched under an older generation
    /// are never handled.
    generation: u64,
    /// The generation the server-side consumer matches.
    synced: Option<u64>,
}

struct Inner {
    conn: nats::Connection,
    config: JetStreamConfig,
    template: SubjectTemplate,
    handler: Handler,
    on_error: Option<ErrorHook>,
    state: Mutex<State>,
    /// Held while the handler runs and its message is acked or naked.
    running: Mutex<()>,
    /// Serializes consumer updates (from `apply` and the retrying loop).
    sync: Mutex<()>,
    /// Ack subject of the last message acked under the current consumer.
    last_ack: Mutex<Option<String>>,
    wake: Sender<()>,
    stopped: AtomicBool,
}

/// **The Kafka consumer group replacement**: one durable JetStream pull
/// consumer per worker whose filter subjects are exactly the partitions this
/// worker owns, a fetch loop, and a handler whose `Ok` acks and `Err` naks.
///
/// Call [`apply`](JetStreamConsumer::apply) from
/// [`on_assignment_changed`](crate::ManagerBuilder::on_assignment_changed).
/// On every change the consumer is recreated with the new filter subjects
/// before `apply` returns, and messages fetched for an earlier assignment are
/// never handled (they are naked). On a work-queue stream a message leaves
/// the stream only when acked, so whatever the old owner had not acked is
/// delivered to the new owner's consumer: every message is handled, by the
/// partition's owner of the moment, at least once (twice only when an ack was
/// lost).
///
/// Give it a connection of its own; it does not close it (close it after
/// [`stop`](JetStreamConsumer::stop)).
///
/// Server side: nats-server ≥ 2.10 (multiple filter subjects). The stream
/// must exist with `retention: workqueue`; [`start`](JetStreamConsumer::start)
/// checks it.
///
/// ```no_run
/// use std::sync::Arc;
/// use parti::subscription::{JetStreamConfig, JetStreamConsumer};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let nc = parti::store::nats::connect("127.0.0.1:4222")?;
/// let consumer = Arc::new(JetStreamConsumer::start(
///     nc,
///     JetStreamConfig::new("ORDERS", "orders-worker-0", "orders.{id}.>"),
///     |partition, msg| {
///         println!("{partition}: {}", msg.subject);
///         Ok(()) // Err(..) naks: the message is redelivered
///     },
/// )?);
/// let hook = consumer.clone();
/// // ManagerBuilder::on_assignment_changed(move |c| hook.apply(c))
/// consumer.stop()?;
/// # Ok(()) }
/// ```
pub struct JetStreamConsumer {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for JetStreamConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamConsumer")
            .field("stream", &self.inner.config.stream)
            .field("durable", &self.inner.config.durable)
            .finish_non_exhaustive()
    }
}

impl JetStreamConsumer {
    /// Checks the stream and starts the fetch loop. Nothing is fetched until
    /// `apply` assigns partitions.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] / [`Error::InvalidName`] for bad settings or a
    /// stream that is not a work queue; [`Error::Subscription`] when the
    /// stream cannot be read (missing, NATS unreachable, no permission).
    pub fn start(
        conn: nats::Connection,
        config: JetStreamConfig,
        handler: impl Fn(&Partition, &nats::Message) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        Self::start_with_error_hook(conn, config, handler, None)
    }

    /// Like [`start`](Self::start), with a hook for the errors the helper
    /// works around (failed consumer updates, handler panics, slow releases).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_with_error_hook(
        conn: nats::Connection,
        config: JetStreamConfig,
        handler: impl Fn(&Partition, &nats::Message) -> Result<(), HandlerError> + Send + Sync + 'static,
        on_error: Option<ErrorHook>,
    ) -> Result<Self, Error> {
        let template = config.validate()?;
        let info = api(
            &conn,
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
        let (wake, woken) = crossbeam_channel::bounded(1);
        let inner = Arc::new(Inner {
            conn,
            config,
            template,
            handler: Box::new(handler),
            on_error,
            state: Mutex::new(State {
                owned: BTreeMap::new(),
                generation: 0,
                synced: None,
            }),
            running: Mutex::new(()),
            sync: Mutex::new(()),
            last_ack: Mutex::new(None),
            wake,
            stopped: AtomicBool::new(false),
        });
        let thread_inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("parti-js-consumer".into())
            .spawn(move || fetch_loop(thread_inner, woken))
            .map_err(|e| Error::Subscription {
                what: "start",
                reason: format!("cannot spawn the fetch thread: {e}"),
            })?;
        Ok(JetStreamConsumer {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Follows one assignment change; call it from `on_assignment_changed`.
    ///
    /// When it returns, no handler call for a removed partition is under
    /// way or will be made, and (unless NATS failed, which is reported and
    /// retried) the server-side consumer filters exactly the owned
    /// partitions. Bounded by the release timeout plus two API deadlines.
    pub fn apply(&self, change: &AssignmentChange) {
        let inner = &self.inner;
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        {
            let mut state = inner.state.lock();
            for p in change.removed() {
                state.owned.remove(p.id());
            }
            for p in change.added() {
                match check_partition(&inner.template, p) {
                    Ok(subject) => {
                        state.owned.insert(p.id().to_string(), (p.clone(), subject));
                    }
                    Err(e) => report(&inner.on_error, e),
                }
            }
            state.generation += 1;
        }
        if inner
            .running
            .try_lock_for(inner.config.release_timeout)
            .is_none()
        {
            report(
                &inner.on_error,
                Error::Subscription {
                    what: "release",
                    reason: format!(
                        "a handler call is still running after {:?}; no further call is made for the removed partitions",
                        inner.config.release_timeout
                    ),
                },
            );
        }
        if let Err(e) = sync_consumer(inner) {
            report(&inner.on_error, e);
        }
        let _ = inner.wake.try_send(());
    }

    /// The partitions this consumer currently follows.
    pub fn partitions(&self) -> Vec<Partition> {
        self.inner
            .state
            .lock()
            .owned
            .values()
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Ends the fetch loop, waiting at most `fetch_wait + op_timeout +
    /// release_timeout`. The durable consumer stays (it was emptied when the
    /// manager released every partition, and the server removes it after
    /// `inactive_threshold`). Idempotent.
    ///
    /// # Errors
    /// [`Error::Subscription`] when the loop did not end in time (a handler
    /// that does not return); its thread is left running.
    pub fn stop(&self) -> Result<(), Error> {
        let inner = &self.inner;
        inner.stopped.store(true, Ordering::SeqCst);
        let _ = inner.wake.try_send(());
        let Some(h) = self.thread.lock().take() else {
            return Ok(());
        };
        let c = &inner.config;
        let deadline = Instant::now() + c.fetch_wait + c.op_timeout + c.release_timeout;
        if crate::runtime::join_until(h, deadline) {
            Ok(())
        } else {
            Err(Error::Subscription {
                what: "stop",
                reason: "the fetch loop did not end in time (a handler call that does not return?)"
                    .into(),
            })
        }
    }
}

impl Drop for JetStreamConsumer {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!("parti: {e}");
        }
    }
}

/// A JetStream API request with a deadline; an `error` member becomes
/// [`Error::Subscription`] with the server's description.
fn api(
    conn: &nats::Connection,
    what: &'static str,
    subject: &str,
    body: &Value,
    timeout: Duration,
) -> Result<Value, Error> {
    let fail = |reason: String| Error::Subscription { what, reason };
    let msg = conn
        .request_timeout(subject, body.to_string(), timeout)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::TimedOut {
                fail(format!("{subject}: no answer within {timeout:?} (NATS unreachable, or no permission to publish there)"))
            } else {
                fail(format!("{subject}: {e}"))
            }
        })?;
    if msg.is_no_responders() {
        return Err(fail(format!(
            "{subject}: no responders (JetStream not enabled?)"
        )));
    }
    let value: Value = serde_json::from_slice(&msg.data)
        .map_err(|e| fail(format!("{subject}: unreadable reply: {e}")))?;
    if let Some(err) = value.get("error") {
        return Err(fail(format!(
            "JetStream error {} ({}): {}",
            err["err_code"],
            err["code"],
            err["description"].as_str().unwrap_or_default()
        )));
    }
    Ok(value)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Makes the server-side consumer match the current generation: deletes it
/// and, when partitions are owned, creates it again with their filters.
///
/// Recreating (rather than updating the filters in place) matters: a
/// consumer's position only moves forward, so an updated consumer would skip
/// the older, still unacked messages of a partition it just gained, and its
/// pending list would keep redelivering messages of partitions it lost. A
/// fresh consumer with `deliver_policy: all` on a work queue starts at the
/// oldest unacked message of exactly its filters.
fn sync_consumer(inner: &Inner) -> Result<(), Error> {
    let _sync = inner.sync.lock();
    let (generation, filters) = {
        let state = inner.state.lock();
        if state.synced == Some(state.generation) {
            return Ok(());
        }
        let filters: Vec<String> = state.owned.values().map(|(_, s)| s.clone()).collect();
        (state.generation, filters)
    };
    let c = &inner.config;
    // The server processes a consumer's acks in order on a queue of their
    // own, apart from API requests: an ack sent just before the delete could
    // be dropped with the consumer, and its message handled again by the
    // partition's next owner. Acking the last message again, synchronously,
    // returns once every earlier ack has been processed.
    let last_ack = inner.last_ack.lock().take();
    if let Some(reply) = last_ack {
        let _ = inner.conn.request_timeout(&reply, "+ACK", c.op_timeout);
    }
    match api(
        &inner.conn,
        "consumer delete",
        &format!("$JS.API.CONSUMER.DELETE.{}.{}", c.stream, c.durable),
        &json!({}),
        c.op_timeout,
    ) {
        Ok(_) => {}
        // 10014: consumer not found: nothing to delete.
        Err(Error::Subscription { reason, .. }) if reason.contains("10014") => {}
        Err(e) => return Err(e),
    }
    if !filters.is_empty() {
        let mut config = json!({
            "durable_name": c.durable,
            "ack_policy": "explicit",
            "deliver_policy": "all",
            "ack_wait": nanos(c.ack_wait),
            "inactive_threshold": nanos(c.inactive_threshold),
            "max_ack_pending": (c.batch * 4),
        });
        if let [only] = filters.as_slice() {
            config["filter_subject"] = json!(only);
        } else {
            config["filter_subjects"] = json!(filters);
        }
        api(
            &inner.conn,
            "consumer create",
            &format!("$JS.API.CONSUMER.CREATE.{}.{}", c.stream, c.durable),
            &json!({ "stream_name": c.stream, "config": config }),
            c.op_timeout,
        )?;
    }
    let mut state = inner.state.lock();
    if state.generation == generation {
        state.synced = Some(generation);
    }
    Ok(())
}

fn fetch_loop(inner: Arc<Inner>, woken: Receiver<()>) {
    let c = inner.config.clone();
    while !inner.stopped.load(Ordering::SeqCst) {
        let (generation, synced, empty) = {
            let s = inner.state.lock();
            (
                s.generation,
                s.synced == Some(s.generation),
                s.owned.is_empty(),
            )
        };
        if !synced {
            if let Err(e) = sync_consumer(&inner) {
                report(&inner.on_error, e);
                let _ = woken.recv_timeout(c.retry_every);
            }
            continue;
        }
        if empty {
            let _ = woken.recv_timeout(c.fetch_wait);
            continue;
        }
        if let Err(e) = fetch(&inner, generation) {
            report(&inner.on_error, e);
            // The consumer may be gone (removed by an operator, or by the
            // server after `inactive_threshold` while a handler ran long):
            // recreate it before fetching again.
            let mut s = inner.state.lock();
            if s.synced == Some(generation) {
                s.synced = None;
            }
            drop(s);
            let _ = woken.recv_timeout(c.retry_every);
        }
    }
}

/// The `Status` header of a JetStream status message (404 no messages, 408
/// request expired, 409 consumer deleted or changed, 100 heartbeat).
fn status(msg: &nats::Message) -> Option<String> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(nats::header::STATUS).cloned())
}

/// One pull request: up to `batch` messages within `fetch_wait`.
fn fetch(inner: &Inner, generation: u64) -> Result<(), Error> {
    let c = &inner.config;
    let fail = |reason: String| Error::Subscription {
        what: "fetch",
        reason,
    };
    let inbox = inner.conn.new_inbox();
    let sub = inner
        .conn
        .subscribe(&inbox)
        .map_err(|e| fail(format!("subscribe to an inbox: {e}")))?;
    let body = json!({ "batch": c.batch, "expires": nanos(c.fetch_wait) });
    let subject = format!("$JS.API.CONSUMER.MSG.NEXT.{}.{}", c.stream, c.durable);
    if let Err(e) = inner
        .conn
        .publish_request(&subject, &inbox, body.to_string())
    {
        let _ = sub.unsubscribe();
        return Err(fail(format!("pull request: {e}")));
    }
    // The server answers by `fetch_wait` at the latest (408); the margin
    // covers the round trip.
    let deadline = Instant::now() + c.fetch_wait + c.op_timeout;
    let mut received = 0;
    let mut result = Ok(());
    while received < c.batch && !inner.stopped.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let msg = match sub.next_timeout(deadline - now) {
            Ok(m) => m,
            Err(_) => break,
        };
        match status(&msg).as_deref() {
            None => {}
            Some("100") => continue,
            Some("404") | Some("408") => break,
            Some("409") => {
                // "Consumer Deleted" is our own apply at work; anything else
                // (e.g. "Exceeded MaxWaiting") is worth a report.
                let what = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(nats::header::DESCRIPTION).cloned())
                    .unwrap_or_default();
                if !what.contains("Deleted") {
                    result = Err(fail(format!("pull request ended: 409 {what}")));
                }
                break;
            }
            Some("503") => {
                result = Err(fail(
                    "no responders: the consumer (or JetStream) is gone".into(),
                ));
                break;
            }
            Some(other) => {
                result = Err(fail(format!("unexpected status {other} on pull request")));
                break;
            }
        }
        received += 1;
        handle(inner, generation, &msg);
    }
    let _ = sub.unsubscribe();
    result
}

/// Whether `subject` matches the NATS subject filter `filter`.
fn matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn handle(inner: &Inner, generation: u64, msg: &nats::Message) {
    let _running = inner.running.lock();
    let partition = {
        let state = inner.state.lock();
        if state.generation != generation {
            None
        } else {
            state
                .owned
                .values()
                .find(|(_, filter)| matches(filter, &msg.subject))
                .map(|(p, _)| p.clone())
        }
    };
    let Some(reply) = msg.reply.as_deref() else {
        return;
    };
    // Fetched for an assignment that has changed since: not ours to handle;
    // nak so the current consumer delivers it again at once.
    let Some(p) = partition else {
        let _ = inner.conn.publish(reply, "-NAK");
        return;
    };
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (inner.handler)(&p, msg)));
    let ack: &str = match outcome {
        Ok(Ok(())) => "+ACK",
        Ok(Err(e)) => {
            log::debug!("parti: handler failed on {} ({p}): {e}; nak", msg.subject);
            "-NAK"
        }
        Err(_) => {
            report(
                &inner.on_error,
                Error::CallbackPanicked {
                    callback: "jetstream handler",
                    message: format!("on {} (partition {p}); the message was naked", msg.subject),
                },
            );
            "-NAK"
        }
    };
    // Queued while `running` is held, so the ack precedes (on this
    // connection) the consumer deletion of the `apply` waiting for us.
    if inner.conn.publish(reply, ack).is_ok() && ack == "+ACK" {
        *inner.last_ack.lock() = Some(reply.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn subject_matching() {
        assert!(matches("orders.1.>", "orders.1.a"));
        assert!(matches("orders.1.>", "orders.1.a.b"));
        assert!(!matches("orders.1.>", "orders.1"));
        assert!(!matches("orders.1.>", "orders.10.a"));
        assert!(matches("orders.*.x", "orders.7.x"));
        assert!(matches("orders.7", "orders.7"));
        assert!(!matches("orders.7", "orders.7.x"));
    }
}
