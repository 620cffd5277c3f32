//! The crate's error type.

use std::time::Duration;

use crate::state::State;
use crate::store::KvError;

/// Everything that can go wrong in parti.
///
/// Each variant says when it happens. The enum is `#[non_exhaustive]`: match
/// with a wildcard arm so new variants do not break your build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`Config`](crate::Config) field is out of range or inconsistent with
    /// another field. Returned by `Config::validate` and `start()` before
    /// anything is written to NATS.
    #[error("invalid config: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A group name, worker-ID prefix or preferred ID cannot be used as a
    /// NATS KV bucket or key name. Returned before anything is written.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A strategy was asked to place partitions on an empty set of workers.
    #[error("no workers to assign partitions to")]
    NoWorkers,
    /// Two partitions share an id.
    #[error("duplicate partition id {id:?}")]
    DuplicatePartition {
        /// The repeated id.
        id: String,
    },
    /// A partition (or worker id) given to a strategy is unusable, e.g. an
    /// empty id.
    #[error("invalid partition {id:?}: {reason}")]
    InvalidPartition {
        /// The partition id.
        id: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A custom [`AssignmentStrategy`](crate::strategy::AssignmentStrategy)
    /// or [`PartitionSource`](crate::source::PartitionSource) failed.
    #[error("{what} failed: {reason}")]
    Plugin {
        /// Which plug-in failed ("strategy", "partition source").
        what: &'static str,
        /// Its message.
        reason: String,
    },
    /// A custom [`AssignmentStrategy`](crate::strategy::AssignmentStrategy)
    /// or [`PartitionSource`](crate::source::PartitionSource) panicked on the
    /// leader. The panic was caught; the leader resigned so that another
    /// worker leads, and this worker stays out of the election for a while
    /// (twice as long each time it happens again in a row). The published
    /// assignments stay in force meanwhile.
    #[error("{what} panicked: {message}")]
    PluginPanicked {
        /// Which plug-in ("strategy", "partition source").
        what: &'static str,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// `start()` did not see this worker's first assignment within
    /// `Config::startup_timeout`. The manager was stopped.
    #[error("startup timed out after {after:?} in state {state}")]
    StartupTimeout {
        /// How long it waited.
        after: Duration,
        /// The state it was stuck in.
        state: State,
    },
    /// `wait_for_state` gave up.
    #[error("state {wanted} not reached within {after:?} (now {current})")]
    WaitTimeout {
        /// The awaited state.
        wanted: State,
        /// How long it waited.
        after: Duration,
        /// The state when it gave up.
        current: State,
    },
    /// Every worker ID from `<prefix>-0` to `<prefix>-<max_workers - 1>` is
    /// held by a live worker.
    #[error("no free worker id below {max_workers}")]
    NoFreeWorkerId {
        /// The configured `Config::max_workers`.
        max_workers: u32,
    },
    /// A value found in one of the group's buckets could not be decoded. The
    /// value is ignored; the last good state is kept.
    #[error("corrupt value in bucket {bucket} key {key}: {reason}")]
    Corrupt {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The decoding error.
        reason: String,
    },
    /// A record the leader must write is longer than a NATS server with
    /// default settings accepts (`max_payload`, 1 MiB; a server closes the
    /// connection of a client that sends more): one worker would hold too
    /// many partitions (about 35,000 with short IDs). The record is not
    /// sent (and retried while in force): its worker keeps what it had
    /// (waiting for an assignment if it had none), and nobody is granted
    /// what it would have moved, so no partition is owned twice. Run more
    /// workers.
    #[error("record {key} in bucket {bucket} is {bytes} bytes, above the {limit} bytes a NATS server accepts by default")]
    RecordTooLarge {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The encoded length.
        bytes: usize,
        /// [`wire::MAX_RECORD_BYTES`](crate::wire::MAX_RECORD_BYTES).
        limit: usize,
    },
    /// A user callback panicked. The manager caught it and keeps working.
    #[error("callback {callback} panicked: {message}")]
    CallbackPanicked {
        /// Which hook.
        callback: &'static str,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// An internal state transition not in the table of allowed transitions
    /// was attempted. It was not applied. This is a bug in parti: please
    /// report it.
    #[error("invalid state transition {from} -> {to}")]
    InvalidTransition {
        /// Current state.
        from: State,
        /// Rejected target state.
        to: State,
    },
    /// NATS has been unreachable for `for_` (reported at escalating
    /// intervals while the worker is degraded).
    #[error("NATS unavailable for {for_:?}")]
    Degraded {
        /// How long the outage has lasted.
        for_: Duration,
    },
    /// A worker has not released partitions moved away from it within
    /// `Config::handoff_timeout` (its release callback may be stuck). The
    /// partitions are granted elsewhere only once it releases them or its
    /// heartbeat lease expires.
    #[error("worker {worker} has not released moved partitions after {waited:?}")]
    HandoffTimeout {
        /// The slow worker.
        worker: String,
        /// How long the leader has waited.
        waited: Duration,
    },
    /// This worker's ID was taken over by another process (this process was
    /// presumed dead). The manager stops.
    #[error("worker id {worker} was taken over by another process")]
    WorkerIdLost {
        /// The lost ID.
        worker: String,
    },
    /// `stop()` gave up waiting for a thread (most likely a user callback
    /// that does not return); that thread was left running.
    #[error("shutdown did not finish within {after:?}")]
    ShutdownTimeout {
        /// The configured `shutdown_timeout`.
        after: Duration,
    },
    /// The manager is stopped (or stopping) and cannot do what was asked.
    #[error("manager is stopped")]
    Stopped,
    /// A connection to NATS could not be made: the server is unreachable or
    /// rejected the credentials (`reason` carries the server's words, e.g.
    /// "authorization violation"). Returned at once by
    /// [`store::nats::connect_with`](crate::store::nats::connect_with).
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The server URL(s) tried.
        url: String,
        /// Why, as the client or server put it.
        reason: String,
    },
    /// The NATS server refused an operation because the user lacks a
    /// permission. `permission` names it as the server reported it, e.g.
    /// `publish to "$KV.parti-orders-workers.worker-0"`.
    #[error("NATS permissions violation: missing permission to {permission}")]
    PermissionDenied {
        /// The denied operation and subject, in the server's words.
        permission: String,
    },
    /// A subscription helper ([`subscription`](crate::subscription)) could not
    /// subscribe, create or update its consumer, or release a partition in
    /// time. The helper retries on its own; this reports the delay.
    #[error("subscription {what}: {reason}")]
    Subscription {
        /// What failed ("subscribe", "consumer update", "release", …).
        what: &'static str,
        /// Details.
        reason: String,
    },
    /// A KV operation failed. See [`KvError`] for the cases.
    #[error(transparent)]
    Kv(#[from] KvError),
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string())
}

/// Runs user plug-in code (`what` names it), turning a panic into
/// [`Error::PluginPanicked`].
pub(crate) fn catch_plugin<T>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(Error::PluginPanicked {
            what,
            message: panic_message(payload.as_ref()),
        })
    })
}
