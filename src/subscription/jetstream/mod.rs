//! One durable JetStream pull consumer per partition, pulled from by the
//! partition's owner.

mod link;
mod pull;
mod server;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use self::pull::{Slot, Slots};
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
///     ..JetStreamConfig::new("ORDERS", "orders", "orders.{id}.>")
/// };
/// assert_eq!(config.fetch_wait, Duration::from_secs(1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// The stream. It must use work-queue retention (`retention:
    /// workqueue`): messages leave it when acked, which is what lets a
    /// partition's unfinished messages follow it to its next owner.
    pub stream: String,
    /// The prefix of the durable consumers' names: partition `p`'s consumer
    /// is `<durable>_<p>` (bytes of `p` outside `[A-Za-z0-9-]` written
    /// `_xx`). Give every worker of the group the same prefix, e.g. the
    /// group name: then a partition's new owner finds its previous owner's
    /// consumer by name. (Different prefixes still work, each move then
    /// costs a listing of the stream's consumers; see
    /// [`JetStreamConsumer`].)
    pub durable: String,
    /// The subject filter of a partition, with one `{id}`, e.g.
    /// `orders.{id}.>`.
    pub subject_template: String,
    /// Messages asked for per pull request, per partition (default 64); a
    /// partition's consumer has at most `4 × batch` messages delivered and
    /// not yet acked.
    pub batch: usize,
    /// How long one pull request waits for messages (default 1 s). Messages
    /// are delivered the moment they are stored, whatever this is: it only
    /// sets how often an idle partition's pull request is renewed.
    pub fetch_wait: Duration,
    /// Deadline of each JetStream API request (default 2 s).
    pub op_timeout: Duration,
    /// The consumer's ack wait: an unacknowledged message is redelivered
    /// after this (default 30 s).
    pub ack_wait: Duration,
    /// The server deletes a partition's consumer after this long without
    /// pull requests (default 30 s): what a group leaves behind when it
    /// stops, or when its partitions are removed, goes away by itself. It
    /// does not delay failover: a crashed worker's partitions' consumers are
    /// reset by their new owners at once. Keep it well above `fetch_wait`
    /// and your longest handler call (the helper recreates a consumer the
    /// server dropped, but that redelivers its unacked messages).
    pub inactive_threshold: Duration,
    /// Retry period of a failed consumer reset (default 1 s).
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

struct Inner {
    link: link::Link,
    config: JetStreamConfig,
    template: SubjectTemplate,
    handler: Handler,
    on_error: Option<ErrorHook>,
    /// Owned partitions by id.
    slots: Mutex<Slots>,
    /// Held while the handler runs and its message is acked or naked.
    running: Mutex<()>,
    /// Source of [`Slot::grant`] values.
    next_grant: AtomicU64,
    wake: Sender<()>,
    stopped: AtomicBool,
}

/// **The Kafka consumer group replacement**: one durable JetStream pull
/// consumer per owned partition, a fetch loop, and a handler whose `Ok` acks
/// and `Err` naks.
///
/// Call [`apply`](JetStreamConsumer::apply) from
/// [`on_assignment_changed`](crate::ManagerBuilder::on_assignment_changed).
/// Partition `p`'s consumer is named `<durable>_<p>` (see
/// [`JetStreamConfig::durable`]) and filters only `p`'s subject, so every
/// worker finds the same consumer for a partition and no two consumers'
/// filters ever overlap. When a partition is granted, its new owner deletes
/// and recreates that consumer: the stream (a work queue, where a message
/// leaves only when acked) then delivers the partition's oldest unacked
/// message first, whatever the previous owner had received and not acked
/// included. Nothing else changes on a move: the other partitions' consumers
/// are not touched, so a move, a crash or a refused request on one partition
/// never pauses another.
///
/// Delivery is at-least-once (see `docs/consumers.md`): every message is
/// handled, by the partition's owner of the moment; a message is handled a
/// second time only when its first handler's ack did not reach the server
/// (the worker crashed or lost NATS between handling and ack). Within a
/// partition, messages are handled in order, except a naked or redelivered
/// one, which comes back after those already delivered.
///
/// Give it a connection of its own; it does not close it (close it after
/// [`stop`](JetStreamConsumer::stop)).
///
/// Server side: the stream must exist with `retention: workqueue`;
/// [`start`](JetStreamConsumer::start) checks it.
///
/// ```no_run
/// use std::sync::Arc;
/// use parti::subscription::{JetStreamConfig, JetStreamConsumer};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let nc = parti::store::nats::connect("127.0.0.1:4222")?;
/// let consumer = Arc::new(JetStreamConsumer::start(
///     nc,
///     // The same consumer name prefix on every worker of the group.
///     JetStreamConfig::new("ORDERS", "orders", "orders.{id}.>"),
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
        let link = link::Link::new(conn, config.op_timeout);
        server::check_stream(&link, &config)?;
        let (wake, woken) = crossbeam_channel::bounded(1);
        let inner = Arc::new(Inner {
            link,
            config,
            template,
            handler: Box::new(handler),
            on_error,
            slots: Mutex::new(Slots::new()),
            running: Mutex::new(()),
            next_grant: AtomicU64::new(1),
            wake,
            stopped: AtomicBool::new(false),
        });
        let thread_inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("parti-js-consumer".into())
            .spawn(move || pull::fetch_loop(thread_inner, woken))
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
    /// Removed partitions first: when this returns, no handler call for
    /// them is under way or will be made, and the acks of their handled
    /// messages have reached the server (a synchronous ack confirms them),
    /// so their next owner's consumer does not deliver them again. Then each
    /// added partition's consumer is reset (see the type's docs) and pulled
    /// from at once; a failed reset is reported and retried every
    /// `retry_every`, without holding up the other partitions.
    ///
    /// Bounded by the release timeout plus one API deadline per removed
    /// partition and two (three after a refusal) per added one.
    pub fn apply(&self, change: &AssignmentChange) {
        let inner = &self.inner;
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        let mut removed = Vec::new();
        let mut added = Vec::new();
        {
            let mut slots = inner.slots.lock();
            for p in change.removed() {
                if let Some(s) = slots.get_mut(p.id()) {
                    s.revoked = true;
                    removed.push(p.id().to_string());
                }
            }
            for p in change.added() {
                let subject = match check_partition(&inner.template, p) {
                    Ok(subject) => subject,
                    Err(e) => {
                        report(&inner.on_error, e);
                        continue;
                    }
                };
                let grant = inner.next_grant.fetch_add(1, Ordering::Relaxed);
                let consumer = server::consumer_name(&inner.config.durable, p);
                slots.insert(
                    p.id().to_string(),
                    Slot::new(p.clone(), subject, consumer, grant),
                );
                added.push((p.id().to_string(), grant));
            }
        }
        if !removed.is_empty() {
            self.release(&removed);
        }
        pull::prepare(inner, &added);
        let _ = inner.wake.try_send(());
    }

    /// Waits for the handler call under way, then confirms the removed
    /// partitions' acks and drops their slots.
    fn release(&self, removed: &[String]) {
        let inner = &self.inner;
        match inner.running.try_lock_for(inner.config.release_timeout) {
            Some(guard) => drop(guard),
            None => report(
                &inner.on_error,
                Error::Subscription {
                    what: "release",
                    reason: format!(
                        "a handler call is still running after {:?}; no further call is made for the removed partitions",
                        inner.config.release_timeout
                    ),
                },
            ),
        }
        let gone: Vec<Slot> = {
            let mut slots = inner.slots.lock();
            removed
                .iter()
                .filter_map(|id| slots.remove(id).filter(|s| s.revoked))
                .collect()
        };
        for slot in gone {
            // The server processes a consumer's acks in order, apart from
            // API requests: the next owner's reset could drop an ack still
            // queued, and its message would be handled again. Acking the
            // last message again, synchronously, returns once every earlier
            // ack of that consumer has been processed.
            if let Some(reply) = slot.last_ack {
                if let Err(e) = inner.link.request(&reply, b"+ACK", inner.config.op_timeout) {
                    log::debug!("parti: confirming the acks of {}: {e}", slot.partition.id());
                }
            }
        }
    }

    /// The partitions this consumer currently follows.
    pub fn partitions(&self) -> Vec<Partition> {
        self.inner
            .slots
            .lock()
            .values()
            .filter(|s| !s.revoked)
            .map(|s| s.partition.clone())
            .collect()
    }

    /// Ends the fetch loop, waiting at most `fetch_wait + op_timeout +
    /// release_timeout`. The partitions' consumers stay (the server removes
    /// them after `inactive_threshold`; a next owner resets them).
    /// Idempotent.
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
        if crate::runtime::join_until(h, deadline).is_some() {
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
