//! A bucket found missing is recreated with the settings it was opened with.
//!
//! A stream can vanish under a running group: `nats kv rm`, a clean-up
//! script, a server restarted on an empty store directory. Every operation
//! on it then fails (a write finds no responder, a read or a consumer finds
//! no stream) and would keep failing until someone reopens the bucket. The
//! first failure that says the bucket may be missing checks it and, when it
//! is gone, creates it again; the caller gets [`KvError::Recreated`] and its
//! retry works on the new, empty bucket. What the bucket held is lost: the
//! nodes above rebuild it (heartbeats, the lease, the assignment).

use std::time::Instant;

use parking_lot::Mutex;

use super::bucket;
use super::link::{Link, NO_RESPONDERS};
use crate::store::{BucketConfig, KvError};

pub(crate) struct Repair {
    config: BucketConfig,
    /// No check before this: "JetStream down" looks the same as "stream
    /// missing", and an outage must not turn into a stream of API calls.
    next_check: Mutex<Option<Instant>>,
}

impl Repair {
    pub fn new(config: BucketConfig) -> Self {
        Repair {
            config,
            next_check: Mutex::new(None),
        }
    }

    /// What an operation that failed with `error` returns: `error` itself,
    /// or [`KvError::Recreated`] when this call found the bucket missing
    /// and created it again. At most one check per operation deadline.
    pub fn after(&self, link: &Link, error: KvError) -> KvError {
        if !may_be_missing(&error) {
            return error;
        }
        {
            let now = Instant::now();
            let mut next = self.next_check.lock();
            if next.is_some_and(|at| now < at) {
                return error;
            }
            *next = Some(now + link.op_timeout);
        }
        match bucket::open(link, &self.config) {
            Ok(true) => {
                log::warn!(
                    "parti: bucket {} was missing: recreated, empty, with its configured settings",
                    self.config.name
                );
                KvError::Recreated(self.config.name.clone())
            }
            Ok(false) => error,
            Err(e) => {
                log::debug!("parti: checking bucket {}: {e}", self.config.name);
                error
            }
        }
    }
}

/// Whether `error` may mean the bucket's stream is gone.
fn may_be_missing(error: &KvError) -> bool {
    match error {
        KvError::NotFound(_) => true,
        KvError::Unavailable(message) => message.starts_with(NO_RESPONDERS),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_that_can_mean_a_missing_stream_trigger_a_check() {
        assert!(may_be_missing(&KvError::NotFound("b".into())));
        assert!(may_be_missing(&KvError::Unavailable(format!(
            "{NO_RESPONDERS} $KV.b.k (JetStream down or stream missing)"
        ))));
        assert!(!may_be_missing(&KvError::Unavailable(
            "NATS connection: broken pipe".into()
        )));
        assert!(!may_be_missing(&KvError::AlreadyExists("k".into())));
        assert!(!may_be_missing(&KvError::Timeout {
            op: "put",
            after: std::time::Duration::from_secs(1),
        }));
    }
}
