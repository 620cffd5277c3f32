//! The fetch thread of [`JetStreamConsumer`](super::JetStreamConsumer): one
//! pull request at a time on each owned partition's consumer, all answered
//! on inboxes this one thread waits on, and the handler called for each
//! message, one at a time.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde_json::json;

use super::server::{nanos, reset_consumer};
use super::Inner;
use crate::subscription::report;
use crate::{Error, Partition};

/// One owned partition and its consumer.
pub(super) struct Slot {
    pub partition: Partition,
    /// The partition's subject filter.
    pub subject: String,
    /// The partition's consumer (the same name on every worker).
    pub consumer: String,
    /// Unique per grant: tells this ownership from an earlier one.
    pub grant: u64,
    /// Set by `apply` before it waits for the handler: no further call.
    pub revoked: bool,
    /// The consumer was reset for this grant; pulls are answered here.
    pub ready: Option<Ready>,
    /// A reset is under way (by `apply` or the fetch thread).
    pub resetting: bool,
    /// When a failed reset is tried again.
    pub retry_at: Instant,
    /// Ack subject of the last message acked: `apply` acks it again,
    /// synchronously, on release.
    pub last_ack: Option<String>,
}

impl Slot {
    pub fn new(partition: Partition, subject: String, consumer: String, grant: u64) -> Slot {
        Slot {
            partition,
            subject,
            consumer,
            grant,
            revoked: false,
            ready: None,
            resetting: false,
            retry_at: Instant::now(),
            last_ack: None,
        }
    }
}

pub(super) struct Ready {
    sub: nats::Subscription,
    inbox: String,
    /// The deadline of the pull request under way, if any.
    pull: Option<Instant>,
    /// Messages the pull request under way may still bring.
    remaining: usize,
}

pub(super) type Slots = BTreeMap<String, Slot>;

/// Resets the consumers of the given (partition, grant) pairs and starts
/// listening for their pulls. A failure is reported and retried by the
/// fetch thread after `retry_every`.
pub(super) fn prepare(inner: &Inner, wanted: &[(String, u64)]) {
    for (id, grant) in wanted {
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        let (consumer, subject) = {
            let mut slots = inner.slots.lock();
            let Some(s) = slots.get_mut(id).filter(|s| s.grant == *grant) else {
                continue;
            };
            if s.revoked || s.resetting || s.ready.is_some() {
                continue;
            }
            s.resetting = true;
            (s.consumer.clone(), s.subject.clone())
        };
        let result =
            reset_consumer(&inner.link, &inner.config, &consumer, &subject).and_then(|()| {
                let inbox = inner.link.conn.new_inbox();
                let sub = inner
                    .link
                    .conn
                    .subscribe(&inbox)
                    .map_err(|e| Error::Subscription {
                        what: "subscribe",
                        reason: format!("an inbox for pulls: {e}"),
                    })?;
                Ok(Ready {
                    sub,
                    inbox,
                    pull: None,
                    remaining: 0,
                })
            });
        let mut slots = inner.slots.lock();
        let slot = slots.get_mut(id).filter(|s| s.grant == *grant);
        match (slot, result) {
            (Some(s), Ok(ready)) => {
                s.resetting = false;
                s.ready = Some(ready);
            }
            (Some(s), Err(e)) => {
                s.resetting = false;
                s.retry_at = Instant::now() + inner.config.retry_every;
                drop(slots);
                report(
                    &inner.on_error,
                    Error::Subscription {
                        what: "consumer reset",
                        reason: format!(
                            "partition {id}: {e} (retrying every {:?})",
                            inner.config.retry_every
                        ),
                    },
                );
            }
            // Released meanwhile: the subscription ends with `ready`.
            (None, _) => {}
        }
    }
}

/// Marks a slot's consumer as needing a reset: it is gone (deleted by an
/// operator, or by the server after `inactive_threshold`).
fn needs_reset(inner: &Inner, id: &str, grant: u64, why: String) {
    if let Some(s) = inner.slots.lock().get_mut(id).filter(|s| s.grant == grant) {
        s.ready = None;
        s.retry_at = Instant::now() + inner.config.retry_every;
    }
    report(
        &inner.on_error,
        Error::Subscription {
            what: "fetch",
            reason: format!("partition {id}: {why}; resetting its consumer"),
        },
    );
}

pub(super) fn fetch_loop(inner: Arc<Inner>, woken: Receiver<()>) {
    let c = inner.config.clone();
    while !inner.stopped.load(Ordering::SeqCst) {
        let now = Instant::now();
        let due: Vec<(String, u64)> = inner
            .slots
            .lock()
            .iter()
            .filter(|(_, s)| !s.revoked && !s.resetting && s.ready.is_none() && s.retry_at <= now)
            .map(|(id, s)| (id.clone(), s.grant))
            .collect();
        if !due.is_empty() {
            prepare(&inner, &due);
            continue;
        }
        issue_pulls(&inner);
        // Wait for the first answer on any inbox, a wake-up, or the next
        // deadline (a pull's end, a retry).
        let (targets, next) = {
            let slots = inner.slots.lock();
            let mut next = Instant::now() + c.fetch_wait;
            let mut targets = Vec::new();
            for (id, s) in slots.iter() {
                match &s.ready {
                    Some(r) if !s.revoked => {
                        targets.push((id.clone(), s.grant, r.sub.receiver().clone()));
                        if let Some(d) = r.pull {
                            next = next.min(d);
                        }
                    }
                    _ if !s.revoked && !s.resetting => next = next.min(s.retry_at),
                    _ => {}
                }
            }
            (targets, next)
        };
        let wait = next
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        if let Some((index, msg)) = crate::subscription::next_message(&targets, &woken, wait) {
            let (id, grant, _) = &targets[index];
            on_message(&inner, id, *grant, &msg);
        }
    }
    // No more pulls: stop listening (what was delivered and not handled
    // stays unacked, and the partitions' next owners get it).
    for s in inner.slots.lock().values_mut() {
        s.ready = None;
    }
}

/// Sends a pull request on every ready consumer that has none under way.
///
/// A pull request whose deadline passed unanswered (lost with a broken
/// connection, say) is simply replaced: resetting the consumer would drop
/// acks still on their way and hand their messages out again. A consumer
/// that is really gone answers the next pull with 503 (no responders).
fn issue_pulls(inner: &Inner) {
    let c = &inner.config;
    let now = Instant::now();
    let body = json!({ "batch": c.batch, "expires": nanos(c.fetch_wait) }).to_string();
    let mut sent = false;
    {
        let mut slots = inner.slots.lock();
        for (id, s) in slots.iter_mut() {
            let Some(r) = s.ready.as_mut().filter(|_| !s.revoked) else {
                continue;
            };
            match r.pull {
                // Answers may still be queued (e.g. behind a long handler
                // call): read them before giving up on the request.
                Some(d) if d <= now && r.sub.receiver().is_empty() => {
                    log::debug!("parti: the pull request for {id} went unanswered; renewing it");
                }
                Some(_) => continue,
                None => {}
            }
            let subject = format!("$JS.API.CONSUMER.MSG.NEXT.{}.{}", c.stream, s.consumer);
            match inner.link.conn.publish_request(&subject, &r.inbox, &body) {
                Ok(()) => {
                    // The server answers by `fetch_wait` (408) at the latest;
                    // the margin covers the round trip.
                    r.pull = Some(now + c.fetch_wait + c.op_timeout);
                    r.remaining = c.batch;
                    sent = true;
                }
                Err(e) => log::debug!("parti: pull request for {id}: {e}"),
            }
        }
    }
    if sent {
        // The client's writer would send them within 5 ms; a flush now
        // saves that on every pull.
        inner.link.kick();
    }
}

/// The `Status` header of a JetStream status message (404 no messages, 408
/// request expired, 409 consumer deleted or changed, 100 heartbeat).
fn status(msg: &nats::Message) -> Option<String> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(nats::header::STATUS).cloned())
}

/// Ends the pull request under way on a slot (or counts one message of it).
fn end_pull(inner: &Inner, id: &str, grant: u64, all: bool) {
    let mut slots = inner.slots.lock();
    let Some(r) = slots
        .get_mut(id)
        .filter(|s| s.grant == grant)
        .and_then(|s| s.ready.as_mut())
    else {
        return;
    };
    r.remaining = r.remaining.saturating_sub(1);
    if all || r.remaining == 0 {
        r.pull = None;
    }
}

fn on_message(inner: &Inner, id: &str, grant: u64, msg: &nats::Message) {
    match status(msg).as_deref() {
        None => {
            end_pull(inner, id, grant, false);
            handle(inner, id, grant, msg);
        }
        Some("100") => {}
        Some("404") | Some("408") => end_pull(inner, id, grant, true),
        Some(code) => {
            end_pull(inner, id, grant, true);
            let what = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(nats::header::DESCRIPTION).cloned())
                .unwrap_or_default();
            // 409 "Consumer Deleted" (by someone else: an operator, the
            // server after `inactive_threshold`) and 503 (no consumer, no
            // JetStream) leave nothing to pull from; anything else (e.g.
            // 409 "Exceeded MaxWaiting") is reported and the pull retried.
            if what.contains("Deleted") || code == "503" {
                needs_reset(
                    inner,
                    id,
                    grant,
                    format!("pull request ended: {code} {what}"),
                );
            } else {
                report(
                    &inner.on_error,
                    Error::Subscription {
                        what: "fetch",
                        reason: format!("partition {id}: pull request ended: {code} {what}"),
                    },
                );
            }
        }
    }
}

fn handle(inner: &Inner, id: &str, grant: u64, msg: &nats::Message) {
    let _running = inner.running.lock();
    // Checked under `running`: once `apply` marked the partition revoked and
    // took `running`, no message of it reaches the handler. Such a message
    // stays unacked: the next owner's fresh consumer delivers it again.
    let partition = inner
        .slots
        .lock()
        .get(id)
        .filter(|s| s.grant == grant && !s.revoked)
        .map(|s| s.partition.clone());
    let (Some(p), Some(reply)) = (partition, msg.reply.as_deref()) else {
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
    // Published while `running` is held, so it precedes (on this
    // connection) the synchronous ack of the `apply` waiting for us; sent
    // at once, which narrows what a crash leaves handled but unacked.
    let sent = inner.link.conn.publish(reply, ack).is_ok();
    inner.link.kick();
    if sent && ack == "+ACK" {
        if let Some(s) = inner.slots.lock().get_mut(id).filter(|s| s.grant == grant) {
            s.last_ack = Some(reply.to_string());
        }
    }
}
