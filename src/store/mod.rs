//! The key-value layer parti coordinates through.
//!
//! [`KvStore`] is one bucket; a [`KvBackend`] opens buckets. Two backends:
//! [`nats`] (JetStream KV over the blocking `nats` crate, hardened against its
//! known traps) and [`memory`] (in process, for tests and simulation). Both
//! pass the same conformance suite (`tests/store_conformance.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

pub mod memory;
pub mod nats;

/// A key's revision: the JetStream stream sequence of its last write.
/// Strictly increasing within a bucket.
pub type Revision = u64;

/// A live value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value bytes.
    pub value: Vec<u8>,
    /// The revision of the write that produced this value.
    pub revision: Revision,
}

/// What a [`Watch`] delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was written (or, during the initial replay, currently holds this
    /// value).
    Put(Entry),
    /// A key was deleted or purged. (A key that expires through the bucket's
    /// `max_age` produces no event.)
    Delete {
        /// The key.
        key: String,
        /// The revision of the delete marker.
        revision: Revision,
    },
    /// The initial replay of current values is complete; what follows is live.
    /// Sent once per watch.
    Synced,
}

/// A stream of changes to a bucket. Dropping it stops the watch.
pub struct Watch {
    events: Receiver<WatchEvent>,
    cancel: Option<Box<dyn FnOnce() + Send>>,
    forgot: Arc<AtomicBool>,
}

impl Watch {
    /// Wraps a receiver; `cancel` runs when the watch is dropped.
    pub fn new(events: Receiver<WatchEvent>, cancel: impl FnOnce() + Send + 'static) -> Self {
        Watch {
            events,
            cancel: Some(Box::new(cancel)),
            forgot: Arc::default(),
        }
    }

    /// Shares `flag` as this watch's [`store_forgot`](Self::store_forgot):
    /// a backend sets it before it ends a watch because the store forgot.
    pub fn with_forgot_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.forgot = flag;
        self
    }

    /// Whether the store ended this watch because it forgot what it had
    /// delivered: the bucket was deleted or recreated, or the server came
    /// back on an empty or older store. Revisions seen before may then be
    /// issued again; a new watch's replay tells the current state.
    ///
    /// ```
    /// use parti::store::memory::MemoryBackend;
    /// use parti::store::{BucketConfig, KvBackend};
    /// let store = MemoryBackend::default().open(&BucketConfig::new("demo", None))?;
    /// let watch = store.watch(None)?;
    /// assert!(!watch.store_forgot());
    /// # Ok::<(), parti::store::KvError>(())
    /// ```
    pub fn store_forgot(&self) -> bool {
        self.forgot.load(Ordering::SeqCst)
    }

    /// The events, for use in `crossbeam_channel::select!`. The channel is
    /// disconnected only when the store gives up on the watch for good.
    pub fn events(&self) -> &Receiver<WatchEvent> {
        &self.events
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            cancel();
        }
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// Errors of the KV layer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The key (or bucket) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// `create` found a live value under the key.
    #[error("key already exists: {0}")]
    AlreadyExists(String),
    /// `update` (or a conditional delete) expected another revision.
    #[error("revision mismatch on {key}: expected {expected}")]
    RevisionMismatch {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
    },
    /// No answer within the deadline. For a write, the outcome is UNKNOWN: it
    /// may have been applied (e.g. sent after a reconnect).
    #[error("{op} timed out after {after:?}; outcome unknown")]
    Timeout {
        /// The operation ("put", "create", …).
        op: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The server cannot be reached, or JetStream is not answering.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Invalid key or bucket name, or a bucket that exists with another
    /// configuration.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The bucket was missing — deleted, or the server came back on an
    /// empty store — and has just been recreated, empty, with the settings
    /// it was opened with. The operation was not carried out; retrying it
    /// acts on the new, empty bucket.
    #[error("bucket {0} was missing and has been recreated, empty")]
    Recreated(String),
    /// A watch found that the store forgot what it had delivered: the
    /// bucket's stream was recreated (another creation time) or rolled back
    /// (its last revision below one already seen, so revisions are issued
    /// again). parti rebuilds what it knows from the store as it now is.
    #[error("the store forgot what bucket {0} held (recreated or rolled back); rebuilding from what it holds now")]
    Forgot(String),
    /// Anything else the server or client reported.
    #[error("{0}")]
    Other(String),
}

impl KvError {
    /// Whether the error says nothing about the key's state and a later retry
    /// may succeed (timeouts and outages).
    pub fn is_transient(&self) -> bool {
        matches!(self, KvError::Timeout { .. } | KvError::Unavailable(_))
    }

    /// Whether a compare-and-set or create lost to another writer.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            KvError::AlreadyExists(_) | KvError::RevisionMismatch { .. }
        )
    }
}

/// One KV bucket.
///
/// Every call returns within the store's operation deadline.
pub trait KvStore: Send + Sync {
    /// The bucket's name.
    fn bucket(&self) -> &str;

    /// Writes `value` only if the key has no live value (never written,
    /// deleted, purged or expired). Returns the new revision.
    /// Conflict: [`KvError::AlreadyExists`].
    fn create(&self, key: &str, value: &[u8]) -> Result<Revision, KvError>;

    /// Compare-and-set: writes only if the key's last revision is `expected`
    /// (`0` = only if never written or expired, like `create`).
    /// Conflict: [`KvError::RevisionMismatch`].
    fn update(&self, key: &str, value: &[u8], expected: Revision) -> Result<Revision, KvError>;

    /// Unconditional write. Returns the new revision.
    fn put(&self, key: &str, value: &[u8]) -> Result<Revision, KvError>;

    /// The live value and its revision; `None` if absent, deleted or expired.
    fn get(&self, key: &str) -> Result<Option<Entry>, KvError>;

    /// Deletes the key (leaves a delete marker, seen by watchers). With
    /// `expected`, only if the key's last revision is that one
    /// ([`KvError::RevisionMismatch`] otherwise). Deleting an absent key is
    /// not an error.
    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(), KvError>;

    /// The keys that have a live value.
    fn keys(&self) -> Result<Vec<String>, KvError>;

    /// Replays the current value of every key matching `key` (`None` = all
    /// keys), then [`WatchEvent::Synced`], then live changes, in revision
    /// order. Survives server restarts and connection cuts.
    fn watch(&self, key: Option<&str>) -> Result<Watch, KvError>;
}

/// How to create (or open) a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketConfig {
    /// Bucket name: `[-_a-zA-Z0-9]+`.
    pub name: String,
    /// Values older than this expire (no watch event). `None`: never.
    pub max_age: Option<Duration>,
    /// Number of replicas in a JetStream cluster (1 on a single server).
    pub replicas: usize,
}

impl BucketConfig {
    /// A single-replica bucket.
    pub fn new(name: impl Into<String>, max_age: Option<Duration>) -> Self {
        BucketConfig {
            name: name.into(),
            max_age,
            replicas: 1,
        }
    }
}

/// Opens buckets.
pub trait KvBackend: Send + Sync {
    /// Creates the bucket if missing (idempotent for the same config); a
    /// bucket that exists with a different config is [`KvError::Invalid`],
    /// naming the difference.
    fn open(&self, config: &BucketConfig) -> Result<Arc<dyn KvStore>, KvError>;

    /// Releases the backend's connection, without blocking. Called by a
    /// manager's `stop()` on the backend it was built with. The default does
    /// nothing.
    fn close(&self) {}
}

/// Whether `key` is a valid KV key: non-empty, `[-/_=.a-zA-Z0-9]`, not
/// starting or ending with `.`.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
}

/// Whether `name` is a valid bucket name: non-empty, `[-_a-zA-Z0-9]`.
pub fn is_valid_bucket(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
