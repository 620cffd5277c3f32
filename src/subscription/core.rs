//! Core NATS subscriptions per owned partition.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::{check_partition, next_message, report, ErrorHook, SubjectTemplate, Target};
use crate::{AssignmentChange, Error, Partition};

type Handler = Box<dyn Fn(&Partition, &nats::Message) + Send + Sync>;

struct Sub {
    partition: Partition,
    subject: String,
    /// `None` while a subscribe is waiting for a retry.
    sub: Option<nats::Subscription>,
    /// Tells this subscription from an earlier one of the same partition.
    generation: u64,
}

struct Inner {
    conn: nats::Connection,
    template: SubjectTemplate,
    handler: Handler,
    on_error: Option<ErrorHook>,
    subs: Mutex<BTreeMap<String, Sub>>,
    /// Held while the handler runs: `apply` takes it after removing a
    /// partition, so it returns only once no handler call for that
    /// partition is still under way.
    running: Mutex<()>,
    wake: Sender<()>,
    stopped: AtomicBool,
    next_generation: AtomicU64,
    retry_every: Duration,
    release_timeout: Duration,
}

/// Core NATS subscriptions that follow this worker's assignment: one per
/// owned partition, on a [`SubjectTemplate`] such as `orders.{id}.>`.
///
/// Call [`apply`](SubjectSubscriber::apply) from
/// [`on_assignment_changed`](crate::ManagerBuilder::on_assignment_changed):
/// it unsubscribes removed partitions (waiting for their in-flight handler
/// calls) before it returns, and subscribes added ones, retrying failed
/// subscribes every [`retry_every`](SubjectSubscriber::retry_every). The
/// handler runs on one thread of the subscriber's own, one message at a
/// time. Core NATS is at-most-once: a message published while nobody is
/// subscribed (e.g. during a handoff) is not delivered to anyone; use
/// [`JetStreamConsumer`](super::JetStreamConsumer) when every message must
/// be handled.
///
/// Give it a connection of its own (from
/// [`store::nats::connect`](crate::store::nats::connect)); it does not close
/// it. [`stop`](SubjectSubscriber::stop) (also on drop) unsubscribes
/// everything and ends the thread.
///
/// ```no_run
/// use parti::subscription::SubjectSubscriber;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let nc = parti::store::nats::connect("127.0.0.1:4222")?;
/// let sub = SubjectSubscriber::new(nc, "orders.{id}.>", |p, msg| {
///     println!("partition {p}: {}", msg.subject);
/// })?;
/// // From the hook: sub.apply(change);
/// sub.stop();
/// # Ok(()) }
/// ```
pub struct SubjectSubscriber {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SubjectSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectSubscriber")
            .field("template", &self.inner.template)
            .field("partitions", &self.partitions())
            .finish_non_exhaustive()
    }
}

impl SubjectSubscriber {
    /// Starts the handler thread; nothing is subscribed until `apply`.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a template without one `{id}`;
    /// [`Error::Subscription`] if the thread cannot be spawned.
    pub fn new(
        conn: nats::Connection,
        template: &str,
        handler: impl Fn(&Partition, &nats::Message) + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        Self::with_options(
            conn,
            template,
            handler,
            None,
            Duration::from_secs(1),
            Duration::from_secs(10),
        )
    }

    /// Like [`new`](Self::new), with an error hook (failed subscribes,
    /// handlers that outlast `release_timeout`), the subscribe retry period
    /// and how long `apply` waits for an in-flight handler call of a removed
    /// partition.
    ///
    /// # Errors
    /// As [`new`](Self::new); [`Error::InvalidConfig`] for zero durations.
    pub fn with_options(
        conn: nats::Connection,
        template: &str,
        handler: impl Fn(&Partition, &nats::Message) + Send + Sync + 'static,
        on_error: Option<ErrorHook>,
        retry_every: Duration,
        release_timeout: Duration,
    ) -> Result<Self, Error> {
        let template = SubjectTemplate::new(template)?;
        for (field, d) in [
            ("retry_every", retry_every),
            ("release_timeout", release_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::InvalidConfig {
                    field,
                    reason: "must be greater than zero".into(),
                });
            }
        }
        let (wake, woken) = crossbeam_channel::bounded(1);
        let inner = Arc::new(Inner {
            conn,
            template,
            handler: Box::new(handler),
            on_error,
            subs: Mutex::new(BTreeMap::new()),
            running: Mutex::new(()),
            wake,
            stopped: AtomicBool::new(false),
            next_generation: AtomicU64::new(1),
            retry_every,
            release_timeout,
        });
        let thread_inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("parti-subscriber".into())
            .spawn(move || dispatch(thread_inner, woken))
            .map_err(|e| Error::Subscription {
                what: "start",
                reason: format!("cannot spawn the handler thread: {e}"),
            })?;
        Ok(SubjectSubscriber {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// How often failed subscribes are retried.
    pub fn retry_every(&self) -> Duration {
        self.inner.retry_every
    }

    /// Follows one assignment change; call it from `on_assignment_changed`.
    ///
    /// Removed partitions are unsubscribed and their in-flight handler call
    /// (if any) has returned when this returns (bounded by the release
    /// timeout; past it the delay is reported and the handler can no longer
    /// be called for them anyway). Added partitions are subscribed; a failed
    /// subscribe is reported and retried in the background.
    pub fn apply(&self, change: &AssignmentChange) {
        let inner = &self.inner;
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        let mut removed = Vec::new();
        {
            let mut subs = inner.subs.lock();
            for p in change.removed() {
                if let Some(s) = subs.remove(p.id()) {
                    removed.push(s);
                }
            }
            for p in change.added() {
                if subs.contains_key(p.id()) {
                    continue;
                }
                let subject = match check_partition(&inner.template, p) {
                    Ok(s) => s,
                    Err(e) => {
                        report(&inner.on_error, e);
                        continue;
                    }
                };
                let generation = inner.next_generation.fetch_add(1, Ordering::Relaxed);
                let mut sub = Sub {
                    partition: p.clone(),
                    subject,
                    sub: None,
                    generation,
                };
                subscribe(inner, &mut sub);
                subs.insert(p.id().to_string(), sub);
            }
        }
        for s in removed {
            if let Some(sub) = s.sub {
                // Only queues an UNSUB: never blocks on the server.
                let _ = sub.unsubscribe();
            }
        }
        wait_idle(inner);
        let _ = inner.wake.try_send(());
    }

    /// The partitions currently subscribed or waiting for a retry.
    pub fn partitions(&self) -> Vec<Partition> {
        self.inner
            .subs
            .lock()
            .values()
            .map(|s| s.partition.clone())
            .collect()
    }

    /// Unsubscribes everything and ends the handler thread, waiting at most
    /// the release timeout for a handler call under way. Idempotent.
    pub fn stop(&self) {
        let inner = &self.inner;
        inner.stopped.store(true, Ordering::SeqCst);
        let subs = std::mem::take(&mut *inner.subs.lock());
        for s in subs.into_values() {
            if let Some(sub) = s.sub {
                let _ = sub.unsubscribe();
            }
        }
        let _ = inner.wake.try_send(());
        if let Some(h) = self.thread.lock().take() {
            if crate::runtime::join_until(h, Instant::now() + inner.release_timeout).is_none() {
                report(
                    &inner.on_error,
                    Error::Subscription {
                        what: "stop",
                        reason: "a handler call did not return within the release timeout; its thread was left running".into(),
                    },
                );
            }
        }
    }
}

impl Drop for SubjectSubscriber {
    fn drop(&mut self) {
        self.stop();
    }
}

fn subscribe(inner: &Inner, sub: &mut Sub) {
    match inner.conn.subscribe(&sub.subject) {
        Ok(s) => sub.sub = Some(s),
        Err(e) => report(
            &inner.on_error,
            Error::Subscription {
                what: "subscribe",
                reason: format!(
                    "{}: {e} (retrying every {:?})",
                    sub.subject, inner.retry_every
                ),
            },
        ),
    }
}

/// Waits until no handler call is under way.
fn wait_idle(inner: &Inner) {
    match inner.running.try_lock_for(inner.release_timeout) {
        Some(guard) => drop(guard),
        None => report(
            &inner.on_error,
            Error::Subscription {
                what: "release",
                reason: format!(
                    "a handler call is still running after {:?}; no further call is made for the removed partitions",
                    inner.release_timeout
                ),
            },
        ),
    }
}

fn dispatch(inner: Arc<Inner>, woken: Receiver<()>) {
    while !inner.stopped.load(Ordering::SeqCst) {
        // Snapshot of the live subscriptions; rebuilt each round so added and
        // removed partitions are picked up.
        let mut targets: Vec<Target> = Vec::new();
        let mut retry = false;
        {
            let mut subs = inner.subs.lock();
            for s in subs.values_mut() {
                if s.sub.is_none() && !inner.stopped.load(Ordering::SeqCst) {
                    subscribe(&inner, s);
                }
                match &s.sub {
                    Some(sub) => targets.push((
                        s.partition.id().to_string(),
                        s.generation,
                        sub.receiver().clone(),
                    )),
                    None => retry = true,
                }
            }
        }
        let wait = if retry {
            inner.retry_every
        } else {
            Duration::from_secs(1)
        };
        let Some((index, msg)) = next_message(&targets, &woken, wait) else {
            continue;
        };
        let (id, generation, _) = &targets[index];
        let _running = inner.running.lock();
        // Checked under `running`: once `apply` removed the partition and
        // passed `wait_idle`, no message of it reaches the handler.
        let partition = {
            let subs = inner.subs.lock();
            subs.get(id)
                .filter(|s| s.generation == *generation)
                .map(|s| s.partition.clone())
        };
        if let Some(p) = partition {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (inner.handler)(&p, &msg)))
                .is_err()
            {
                report(
                    &inner.on_error,
                    Error::CallbackPanicked {
                        callback: "subscription handler",
                        message: format!("on a message of partition {p}"),
                    },
                );
            }
        }
    }
}
