//! The one vocabulary in which the nodes ask for KV work, and in which the
//! answer comes back. A node never touches a store: it hands out an [`Op`]
//! from `poll_op` and takes the [`Reply`] in `handle_reply`, so the runtime
//! threads (which perform it on NATS) and the simulator (which performs it
//! on the memory store, at once, late or never) drive the same node code.

use crate::store::{Entry, KvError, KvStore, Revision};

/// Which of the group's buckets an operation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bucket {
    /// Worker IDs and heartbeats.
    Workers,
    /// The leader lease.
    Leader,
    /// Published assignments and `_meta`.
    Assignments,
}

/// A KV operation a node wants performed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Read a key.
    Get {
        /// The bucket.
        bucket: Bucket,
        /// The key.
        key: String,
    },
    /// List the keys of a bucket.
    Keys {
        /// The bucket.
        bucket: Bucket,
    },
    /// Write a key that must not exist yet.
    Create {
        /// The bucket.
        bucket: Bucket,
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// Compare-and-set a key at `revision`.
    Update {
        /// The bucket.
        bucket: Bucket,
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The revision the key must still have.
        revision: Revision,
    },
    /// Delete a key, if it is still at `expected` when given.
    Delete {
        /// The bucket.
        bucket: Bucket,
        /// The key.
        key: String,
        /// The revision the key must still have.
        expected: Option<Revision>,
    },
}

impl Op {
    /// The bucket it is for.
    pub(crate) fn bucket(&self) -> Bucket {
        match self {
            Op::Get { bucket, .. }
            | Op::Keys { bucket }
            | Op::Create { bucket, .. }
            | Op::Update { bucket, .. }
            | Op::Delete { bucket, .. } => *bucket,
        }
    }

    /// Performs it on `store` (the store of [`bucket`](Self::bucket)): the
    /// one place where an operation meets a store, for the runtime and the
    /// simulator alike.
    pub(crate) fn perform(&self, store: &dyn KvStore) -> Reply {
        match self {
            Op::Get { key, .. } => Reply::Entry(store.get(key)),
            Op::Keys { .. } => Reply::Keys(store.keys()),
            Op::Create { key, value, .. } => Reply::Written(store.create(key, value)),
            Op::Update {
                key,
                value,
                revision,
                ..
            } => Reply::Written(store.update(key, value, *revision)),
            Op::Delete { key, expected, .. } => Reply::Deleted(store.delete(key, *expected)),
        }
    }

    /// The reply of a client that gave up waiting (`after`): the operation
    /// may or may not have been applied.
    pub(crate) fn timed_out(&self, after: std::time::Duration) -> Reply {
        let e = KvError::Timeout {
            op: "simulated",
            after,
        };
        match self {
            Op::Get { .. } => Reply::Entry(Err(e)),
            Op::Keys { .. } => Reply::Keys(Err(e)),
            Op::Create { .. } | Op::Update { .. } => Reply::Written(Err(e)),
            Op::Delete { .. } => Reply::Deleted(Err(e)),
        }
    }
}

/// The answer to an [`Op`].
#[derive(Debug)]
pub(crate) enum Reply {
    /// To [`Op::Get`].
    Entry(Result<Option<Entry>, KvError>),
    /// To [`Op::Keys`].
    Keys(Result<Vec<String>, KvError>),
    /// To [`Op::Create`] and [`Op::Update`]: the new revision.
    Written(Result<Revision, KvError>),
    /// To [`Op::Delete`].
    Deleted(Result<(), KvError>),
}

impl Reply {
    /// The error, if the operation failed.
    pub(crate) fn error(&self) -> Option<&KvError> {
        match self {
            Reply::Entry(Err(e)) | Reply::Keys(Err(e)) | Reply::Written(Err(e)) => Some(e),
            Reply::Deleted(Err(e)) => Some(e),
            _ => None,
        }
    }
}
