//! The watch hub: one thread per backend serving every watch.
//!
//! The crate's own watcher blocks without a deadline and stalls forever once
//! the server has dropped its consumer (traps 5 and 6). Here each watch owns
//! an ephemeral push consumer with idle heartbeats delivering to a
//! subscription of its own; the hub selects over all of them. A watch that
//! hears nothing (not even a heartbeat) for [`STALL_AFTER`], sees a gap in the
//! consumer sequence or a status from the server, gets a new consumer
//! starting right after the last stream sequence it delivered, so nothing is
//! lost and nothing is delivered twice. A failed re-creation is retried with
//! backoff for as long as the watch lives.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender};
use nats::{Message, Subscription};

use super::bucket::{self, Life};
use super::consumer::{self, Spec, Start};
use super::link::Link;
use super::wire::{self, Op};
use crate::store::{Entry, KvError, WatchEvent};

/// The idle heartbeat asked from the server.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence after which a watch's consumer is presumed lost.
pub(crate) const STALL_AFTER: Duration = Duration::from_secs(3);
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// Upper bound on the hub's sleep, so stall checks run regularly.
const MAX_IDLE: Duration = Duration::from_secs(1);

/// Messages to the hub.
pub(crate) enum Cmd {
    Add(Box<WatchState>),
    Remove(u64),
}

struct Active {
    sub: Subscription,
    consumer: String,
}

/// One watch, owned by the hub once started.
pub(crate) struct WatchState {
    pub id: u64,
    stream: String,
    prefix: String,
    filter: String,
    /// Reply and delivery subjects go under this ([`wire::inbox_prefix`]).
    inbox: String,
    tx: Sender<WatchEvent>,
    /// Last stream sequence delivered to the user.
    last_seq: u64,
    /// The stream's life when this watch started: a later start that finds
    /// another one ends the watch (see [`WatchState::start`]).
    life: Option<Life>,
    /// Last consumer sequence seen on the current consumer.
    last_cseq: u64,
    synced: bool,
    /// Keys put during the replay: a delete during the replay only matters
    /// for those.
    replayed: HashSet<String>,
    active: Option<Active>,
    /// The connection was closed for good: the watch ends.
    closed: bool,
    /// Set before the watch ends because the store forgot
    /// ([`Watch::store_forgot`](crate::store::Watch::store_forgot)).
    forgot: Arc<AtomicBool>,
    last_heard: Instant,
    retry_at: Instant,
    backoff: Duration,
}

/// What to do with a watch after a message.
enum Next {
    Keep,
    Restart,
    Gone,
}

impl WatchState {
    pub(crate) fn new(
        id: u64,
        bucket: &str,
        key: Option<&str>,
        tx: Sender<WatchEvent>,
        forgot: Arc<AtomicBool>,
    ) -> WatchState {
        let now = Instant::now();
        WatchState {
            id,
            stream: wire::stream_name(bucket),
            prefix: format!("$KV.{bucket}."),
            filter: wire::key_subject(bucket, key.unwrap_or(">")),
            inbox: wire::inbox_prefix(bucket),
            tx,
            last_seq: 0,
            life: None,
            last_cseq: 0,
            synced: false,
            replayed: HashSet::new(),
            active: None,
            closed: false,
            forgot,
            last_heard: now,
            retry_at: now,
            backoff: FIRST_RETRY,
        }
    }

    /// Creates a consumer continuing after the last delivered sequence.
    /// `Ok(false)`: the watch is over — the user dropped it, or the store
    /// forgot what it had delivered: the stream was recreated (another
    /// creation time) or rolled back (its last sequence is below ours).
    /// Continuing would skip or misorder keys, so the watch ends and its
    /// owner opens a new one, whose replay tells the current state.
    pub(crate) fn start(&mut self, link: &Link) -> Result<bool, KvError> {
        self.stop(link);
        let deliver = link.inbox(&self.inbox);
        let sub = link.conn.subscribe(&deliver).map_err(|e| {
            // Subscribing works while disconnected; it fails only on a
            // closed connection, which never comes back.
            self.closed = e.kind() == std::io::ErrorKind::NotConnected;
            KvError::Unavailable(format!("watch: NATS connection: {e}"))
        })?;
        let life = bucket::life(link, &self.inbox, &self.stream, link.deadline())?
            .ok_or_else(|| KvError::NotFound(self.stream.clone()))?;
        if let Some(before) = &self.life {
            if before.created != life.created || life.last_seq < self.last_seq {
                log::warn!(
                    "parti: the store forgot {}: stream created {} (was {}), last revision {} (had seen {}); watch ends",
                    self.stream,
                    life.created,
                    before.created,
                    life.last_seq,
                    self.last_seq
                );
                self.forgot.store(true, Ordering::SeqCst);
                return Ok(false);
            }
        }
        self.life = Some(life);
        let start = if self.last_seq == 0 {
            Start::LastPerSubject
        } else {
            Start::AtSeq(self.last_seq + 1)
        };
        let spec = Spec {
            stream: &self.stream,
            filter: &self.filter,
            deliver: &deliver,
            inbox: &self.inbox,
            start,
            headers_only: false,
            heartbeat: Some(HEARTBEAT),
        };
        let created = consumer::create(link, "watch", &spec, link.deadline())?;
        self.active = Some(Active {
            sub,
            consumer: created.name,
        });
        self.last_cseq = 0;
        self.last_heard = Instant::now();
        self.backoff = FIRST_RETRY;
        if !self.synced && created.num_pending == 0 {
            return Ok(self.mark_synced());
        }
        Ok(true)
    }

    /// Drops the current consumer, if any.
    fn stop(&mut self, link: &Link) {
        if let Some(active) = self.active.take() {
            drop(active.sub);
            consumer::delete_soon(link, &self.stream, &active.consumer);
        }
    }

    fn mark_synced(&mut self) -> bool {
        self.synced = true;
        self.replayed = HashSet::new();
        self.tx.send(WatchEvent::Synced).is_ok()
    }

    fn on_message(&mut self, link: &Link, msg: Message) -> Next {
        self.last_heard = Instant::now();
        let headers = msg.headers.as_ref();
        if let Some(status) = headers.and_then(|h| h.get(nats::header::STATUS)) {
            if status != "100" {
                // e.g. 409 consumer deleted: the consumer is gone.
                return Next::Restart;
            }
            if let Some(reply) = &msg.reply {
                // Flow control request: answer or delivery pauses.
                link.publish(reply, None, b"");
                return Next::Keep;
            }
            if let Some(stalled) = headers.and_then(|h| h.get(nats::header::NATS_CONSUMER_STALLED))
            {
                link.publish(stalled, None, b"");
            }
            let last_consumer = headers
                .and_then(|h| h.get(nats::header::NATS_LAST_CONSUMER))
                .and_then(|v| v.parse::<u64>().ok());
            return match last_consumer {
                // The server delivered more than reached us.
                Some(n) if n > self.last_cseq => Next::Restart,
                _ => Next::Keep,
            };
        }
        let Some(info) = msg.reply.as_deref().and_then(wire::parse_ack_subject) else {
            log::warn!("parti: watch got a message without JetStream metadata");
            return Next::Keep;
        };
        if info.consumer_seq != self.last_cseq + 1 {
            return Next::Restart;
        }
        self.last_cseq = info.consumer_seq;
        if info.stream_seq > self.last_seq {
            self.last_seq = info.stream_seq;
            if let Some(event) = self.event(msg, info.stream_seq) {
                if self.tx.send(event).is_err() {
                    return Next::Gone;
                }
            }
        }
        if !self.synced && info.pending == 0 && !self.mark_synced() {
            return Next::Gone;
        }
        Next::Keep
    }

    fn event(&mut self, msg: Message, revision: u64) -> Option<WatchEvent> {
        let key = msg.subject.strip_prefix(&self.prefix)?.to_string();
        match wire::op_of(msg.headers.as_ref()) {
            Op::Put => {
                if !self.synced {
                    self.replayed.insert(key.clone());
                }
                Some(WatchEvent::Put(Entry {
                    key,
                    value: msg.data,
                    revision,
                }))
            }
            Op::Delete => (self.synced || self.replayed.remove(&key))
                .then_some(WatchEvent::Delete { key, revision }),
        }
    }

    fn restart(&mut self, link: &Link, now: Instant) -> bool {
        log::debug!(
            "parti: re-watch of {} after revision {}",
            self.filter,
            self.last_seq
        );
        match self.start(link) {
            Ok(alive) => alive,
            // The bucket is gone: end the watch, so that its owner learns
            // and reopens it (a reopen recreates the bucket).
            Err(KvError::NotFound(_)) => {
                self.forgot.store(true, Ordering::SeqCst);
                false
            }
            Err(e) => {
                log::debug!("parti: re-watch of {} failed: {e}", self.filter);
                self.retry_later(now);
                // Dropping the sender tells the user the watch is over.
                !self.closed
            }
        }
    }

    fn retry_later(&mut self, now: Instant) {
        self.retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_RETRY);
    }

    fn deadline(&self) -> Instant {
        match self.active {
            Some(_) => self.last_heard + STALL_AFTER,
            None => self.retry_at,
        }
    }
}

/// The hub's loop. Ends when every command sender is gone: the backend and
/// all its stores and watches were dropped.
pub(crate) fn run(link: Arc<Link>, cmds: Receiver<Cmd>) {
    let mut watches: Vec<WatchState> = Vec::new();
    loop {
        let now = Instant::now();
        watches.retain_mut(|w| {
            if now < w.deadline() {
                return true;
            }
            let alive = w.restart(&link, now);
            if !alive {
                w.stop(&link);
            }
            alive
        });
        let deadline = watches
            .iter()
            .map(WatchState::deadline)
            .fold(Instant::now() + MAX_IDLE, Instant::min);

        let woke = {
            let receivers: Vec<(usize, &Receiver<Message>)> = watches
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.active.as_ref().map(|a| (i, a.sub.receiver())))
                .collect();
            let mut select = Select::new();
            select.recv(&cmds);
            for (_, rx) in &receivers {
                select.recv(rx);
            }
            match select.select_deadline(deadline) {
                Err(_) => Woke::Tick,
                Ok(op) if op.index() == 0 => match op.recv(&cmds) {
                    Ok(cmd) => Woke::Cmd(cmd),
                    Err(_) => Woke::Shutdown,
                },
                Ok(op) => {
                    let (i, rx) = receivers[op.index() - 1];
                    match op.recv(rx) {
                        Ok(msg) => Woke::Msg(i, msg),
                        Err(_) => Woke::Lost(i),
                    }
                }
            }
        };

        match woke {
            Woke::Tick => {}
            Woke::Shutdown => break,
            Woke::Cmd(Cmd::Add(w)) => watches.push(*w),
            Woke::Cmd(Cmd::Remove(id)) => {
                if let Some(i) = watches.iter().position(|w| w.id == id) {
                    let mut w = watches.swap_remove(i);
                    w.stop(&link);
                }
            }
            Woke::Msg(i, msg) => match watches[i].on_message(&link, msg) {
                Next::Keep => {}
                Next::Restart => {
                    if !watches[i].restart(&link, Instant::now()) {
                        watches.swap_remove(i).stop(&link);
                    }
                }
                Next::Gone => watches.swap_remove(i).stop(&link),
            },
            Woke::Lost(i) => {
                // The subscription ended under us (connection closed):
                // retry later rather than spin.
                watches[i].stop(&link);
                watches[i].retry_later(Instant::now());
            }
        }
    }
    for mut w in watches {
        w.stop(&link);
    }
}

enum Woke {
    Tick,
    Shutdown,
    Cmd(Cmd),
    Msg(usize, Message),
    Lost(usize),
}
