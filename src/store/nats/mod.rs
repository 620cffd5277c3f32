//! JetStream KV over the blocking `nats` 0.26 crate, hardened against the
//! crate's known traps.
//!
//! - Every operation returns within the backend's operation deadline. Writes
//!   are our own requests to `$KV.<bucket>.<key>` (with
//!   `Nats-Expected-Last-Subject-Sequence` for create and compare-and-set);
//!   the ack is parsed here, and an ack without a sequence is an error.
//! - A write that times out is [`KvError::Timeout`]: its outcome is unknown
//!   (it may still be applied after a reconnect).
//! - Watches run on one hub thread per backend, with heartbeats, stall
//!   detection and automatic re-watch from the last delivered revision.
//!
//! # Connections
//! Options of an existing connection cannot be changed, so connect with
//! [`connect`] or [`connect_options`]: they dial at once (the crate's default
//! sleeps up to 1 s before every attempt, the first included), reconnect
//! forever with a backoff capped at 500 ms (the crate's default gives up after
//! 60 attempts; see [`reconnect_delay`] and `docs/connections.md`) and keep
//! no reconnect buffer, so a write attempted while disconnected fails at
//! once with [`KvError::Unavailable`] (certainly not written) instead of
//! being sent later.
//!
//! # Authentication and TLS
//! [`connect_with`] takes an [`Auth`] (user/password, token, credentials
//! file, nkey); [`options_with`] gives the `nats::Options` to add TLS
//! settings to. [`worker_permissions`] lists the minimal permissions of a
//! worker; [`check_permissions`] names a missing one before `start()`.
//!
//! The `nats` 0.26 crate pins rustls 0.22 / rustls-webpki 0.102, which carry
//! CRL-handling advisories fixed in 0.103. Plain-TCP users (loopback, private
//! networks) are not affected; TLS users should weigh that.
//!
//! ```no_run
//! use std::time::Duration;
//! use parti::store::{BucketConfig, KvBackend};
//! use parti::store::nats::{connect, NatsBackend};
//!
//! let conn = connect("nats://127.0.0.1:4222")?;
//! let backend = NatsBackend::new(conn, Duration::from_secs(2));
//! let store = backend.open(&BucketConfig::new("demo", None))?;
//! let rev = store.create("greeting", b"hello")?;
//! assert_eq!(store.get("greeting")?.map(|e| e.revision), Some(rev));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![allow(deprecated)] // every item of the `nats` 0.26 crate is deprecated (trap 9)

mod auth;
mod backoff;
mod bucket;
mod consumer;
mod link;
mod repair;
mod watch;
mod wire;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nats::HeaderMap;
use parking_lot::Mutex;
use serde_json::json;

pub use self::auth::{
    check_permissions, connect_checked, connect_with, inbox_prefix, options_with,
    recent_permission_violations, worker_permissions, Auth, NKeySigner, Permissions,
};
pub use self::backoff::reconnect_delay;
use self::link::Link;
use self::repair::Repair;
use self::wire::{AckOutcome, Op, StoredMsg};
use super::{is_valid_key, BucketConfig, Entry, KvBackend, KvError, KvStore, Revision, Watch};

/// Connection options suited to parti: connect at once, reconnect forever
/// with a short capped backoff ([`reconnect_delay`]), no reconnect buffer (a
/// publish while disconnected fails at once instead of being sent later),
/// and a client name.
///
/// Use these (or [`connect`]) to build the connection you hand to
/// [`NatsBackend::new`]; an existing connection's options cannot be changed.
pub fn connect_options() -> nats::Options {
    nats::Options::new()
        .with_name("parti")
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .reconnect_buffer_size(0)
        .retry_on_failed_connect()
}

/// Connects to `url` with [`connect_options`].
///
/// With `retry_on_failed_connect`, this returns a connection even while the
/// server is down; operations fail with [`KvError::Unavailable`] until it
/// is reachable.
pub fn connect(url: &str) -> io::Result<nats::Connection> {
    connect_options().connect(url)
}

struct Shared {
    link: Arc<Link>,
    /// The watch hub, started with the first watch.
    hub: Mutex<Option<crossbeam_channel::Sender<watch::Cmd>>>,
    next_watch: AtomicU64,
}

/// Opens JetStream KV buckets over one NATS connection.
///
/// Watches outlive outages and cuts; they end (their channel disconnects)
/// only when the connection is closed.
///
/// Threads: one flusher, plus one watch hub once a watch exists. Both end
/// when the backend, its stores and their watches are dropped.
#[derive(Clone)]
pub struct NatsBackend {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NatsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBackend")
            .field("op_timeout", &self.shared.link.op_timeout)
            .finish_non_exhaustive()
    }
}

impl NatsBackend {
    /// A backend over `conn` (build it with [`connect_options`]); every
    /// operation gives up after `op_timeout`.
    ///
    /// Starts the flusher thread (see the type's docs); the watch hub
    /// starts with the first [`KvStore::watch`].
    pub fn new(conn: nats::Connection, op_timeout: Duration) -> Self {
        NatsBackend {
            shared: Arc::new(Shared {
                link: Arc::new(Link::new(conn, op_timeout)),
                hub: Mutex::new(None),
                next_watch: AtomicU64::new(1),
            }),
        }
    }

    /// Opens a bucket as the concrete store type.
    pub fn open_store(&self, config: &BucketConfig) -> Result<NatsStore, KvError> {
        bucket::open(&self.shared.link, config)?;
        Ok(NatsStore {
            bucket: config.name.clone(),
            stream: wire::stream_name(&config.name),
            inbox: wire::inbox_prefix(&config.name),
            repair: Repair::new(config.clone()),
            shared: self.shared.clone(),
        })
    }
}

impl KvBackend for NatsBackend {
    fn open(&self, config: &BucketConfig) -> Result<Arc<dyn KvStore>, KvError> {
        Ok(Arc::new(self.open_store(config)?))
    }

    /// Closes the connection (and every clone of it) and ends this
    /// backend's threads. Merely dropping a connected `nats::Connection`
    /// leaves its reader thread blocked until the server's next PING
    /// (minutes). The crate's `close` first waits for a PONG with no
    /// deadline, so it runs on a short-lived thread of its own: immediate
    /// while the server is up; during an outage that thread (and the
    /// client's) end as soon as the server is back.
    fn close(&self) {
        // Without its command sender (and with every watch dropped), the
        // watch hub ends; the flusher ends after its current flush.
        self.shared.hub.lock().take();
        let link = &self.shared.link;
        link.close();
        let conn = link.conn.clone();
        let _ = std::thread::Builder::new()
            .name("parti-kv-close".into())
            .spawn(move || conn.close());
    }
}

/// One JetStream KV bucket. Cheap to share; see the [module docs](self).
pub struct NatsStore {
    bucket: String,
    stream: String,
    /// Reply subjects of this bucket's requests ([`wire::inbox_prefix`]).
    inbox: String,
    /// Recreates the bucket when it is found missing.
    repair: Repair,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl NatsStore {
    fn link(&self) -> &Link {
        &self.shared.link
    }

    /// `result`, after recreating the bucket if the error says it may be
    /// missing (see [`Repair`]).
    fn healed<T>(&self, result: Result<T, KvError>) -> Result<T, KvError> {
        match result {
            Err(e) => Err(self.repair.after(self.link(), e)),
            ok => ok,
        }
    }

    fn check_key(&self, key: &str) -> Result<(), KvError> {
        if is_valid_key(key) {
            Ok(())
        } else {
            Err(KvError::Invalid(format!("invalid key {key:?}")))
        }
    }

    /// Publishes a KV message and reads its ack.
    fn write(
        &self,
        op: &'static str,
        key: &str,
        value: &[u8],
        expected: Option<Revision>,
        delete: bool,
        deadline: Instant,
    ) -> Result<AckOutcome, KvError> {
        let mut headers = HeaderMap::new();
        if let Some(rev) = expected {
            headers.insert(wire::EXPECTED_LAST_SUBJECT_SEQ, rev.to_string());
        }
        if delete {
            headers.insert(wire::KV_OPERATION, "DEL".to_string());
        }
        let headers = (!headers.is_empty()).then_some(&headers);
        let subject = wire::key_subject(&self.bucket, key);
        let reply = self
            .link()
            .request(op, &self.inbox, &subject, headers, value, deadline)?;
        wire::parse_ack(op, &self.stream, &reply.data)
    }

    /// The last message under `key`, marker or value.
    fn last_msg(&self, key: &str, deadline: Instant) -> Result<Option<StoredMsg>, KvError> {
        let subject = format!("$JS.API.STREAM.MSG.GET.{}", self.stream);
        let body = json!({ "last_by_subj": wire::key_subject(&self.bucket, key) });
        match self
            .link()
            .api("get", &self.inbox, &subject, &body, deadline)?
        {
            Ok(reply) => wire::parse_msg_get(reply).map(Some),
            Err(e) if e.err_code == link::ERR_NO_MESSAGE => Ok(None),
            Err(e) if e.err_code == link::ERR_STREAM_NOT_FOUND => {
                Err(KvError::NotFound(self.bucket.clone()))
            }
            Err(e) => Err(e.into_kv("get")),
        }
    }

    fn hub(&self) -> Result<crossbeam_channel::Sender<watch::Cmd>, KvError> {
        let mut hub = self.shared.hub.lock();
        if let Some(tx) = hub.as_ref() {
            return Ok(tx.clone());
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let link = self.shared.link.clone();
        std::thread::Builder::new()
            .name("parti-kv-watch".into())
            .spawn(move || watch::run(link, rx))
            .map_err(|e| KvError::Other(format!("cannot start the watch thread: {e}")))?;
        *hub = Some(tx.clone());
        Ok(tx)
    }
}

impl KvStore for NatsStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    fn create(&self, key: &str, value: &[u8]) -> Result<Revision, KvError> {
        self.check_key(key)?;
        self.healed(self.create_once(key, value))
    }

    fn update(&self, key: &str, value: &[u8], expected: Revision) -> Result<Revision, KvError> {
        self.check_key(key)?;
        self.healed(self.update_once(key, value, expected))
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<Revision, KvError> {
        self.check_key(key)?;
        self.healed(self.put_once(key, value))
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, KvError> {
        self.check_key(key)?;
        self.healed(self.get_once(key))
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(), KvError> {
        self.check_key(key)?;
        self.healed(self.delete_once(key, expected))
    }

    fn keys(&self) -> Result<Vec<String>, KvError> {
        let keys = bucket::live_keys(self.link(), &self.bucket, self.link().deadline());
        self.healed(keys)
    }

    fn watch(&self, key: Option<&str>) -> Result<Watch, KvError> {
        if let Some(key) = key {
            self.check_key(key)?;
        }
        let watch = self.watch_once(key);
        self.healed(watch)
    }
}

/// The operations themselves, each one attempt against the bucket.
impl NatsStore {
    fn create_once(&self, key: &str, value: &[u8]) -> Result<Revision, KvError> {
        // One deadline for all rounds.
        let deadline = self.link().deadline();
        let mut expected = 0;
        // A deleted key keeps a marker: expect the marker's sequence instead
        // of 0. Once more only, so a racing writer cannot make us loop.
        for _ in 0..2 {
            match self.write("create", key, value, Some(expected), false, deadline)? {
                AckOutcome::Written(rev) => return Ok(rev),
                AckOutcome::WrongLastSequence => {}
            }
            match self.last_msg(key, deadline)? {
                Some(last) if last.op == Op::Delete && last.seq != expected => expected = last.seq,
                // Expired between our write and the read.
                None if expected != 0 => expected = 0,
                _ => break,
            }
        }
        Err(KvError::AlreadyExists(key.to_string()))
    }

    fn update_once(
        &self,
        key: &str,
        value: &[u8],
        expected: Revision,
    ) -> Result<Revision, KvError> {
        match self.write(
            "update",
            key,
            value,
            Some(expected),
            false,
            self.link().deadline(),
        )? {
            AckOutcome::Written(rev) => Ok(rev),
            AckOutcome::WrongLastSequence => Err(KvError::RevisionMismatch {
                key: key.to_string(),
                expected,
            }),
        }
    }

    fn put_once(&self, key: &str, value: &[u8]) -> Result<Revision, KvError> {
        match self.write("put", key, value, None, false, self.link().deadline())? {
            AckOutcome::Written(rev) => Ok(rev),
            AckOutcome::WrongLastSequence => Err(KvError::Other(
                "put: unexpected sequence check failure".into(),
            )),
        }
    }

    fn get_once(&self, key: &str) -> Result<Option<Entry>, KvError> {
        Ok(self.last_msg(key, self.link().deadline())?.and_then(|m| {
            (m.op == Op::Put).then(|| Entry {
                key: key.to_string(),
                value: m.data,
                revision: m.seq,
            })
        }))
    }

    fn delete_once(&self, key: &str, expected: Option<Revision>) -> Result<(), KvError> {
        match self.write("delete", key, b"", expected, true, self.link().deadline())? {
            AckOutcome::Written(_) => Ok(()),
            AckOutcome::WrongLastSequence => Err(KvError::RevisionMismatch {
                key: key.to_string(),
                expected: expected.unwrap_or(0),
            }),
        }
    }

    fn watch_once(&self, key: Option<&str>) -> Result<Watch, KvError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let id = self.shared.next_watch.fetch_add(1, Ordering::Relaxed);
        let forgot = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut state = watch::WatchState::new(id, &self.bucket, key, tx, forgot.clone());
        state.start(self.link())?;
        let hub = self.hub()?;
        hub.send(watch::Cmd::Add(Box::new(state)))
            .map_err(|_| KvError::Other("the watch thread has stopped".into()))?;
        Ok(Watch::new(rx, move || {
            // The hub may already be gone if everything else was dropped.
            let _ = hub.send(watch::Cmd::Remove(id));
        })
        .with_forgot_flag(forgot))
    }
}
