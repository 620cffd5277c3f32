//! Retrying user code that returned an error (a strategy or a partition
//! source): the placement in force stays, the next attempt waits twice as
//! long as the last (up to a cap), and a failure is reported only when it
//! differs from the previous one, so a source that is down for an hour
//! yields one report, not one per tick.

use std::time::{Duration, Instant};

use crate::Error;

/// The backoff and report memory of one kind of user code.
#[derive(Debug)]
pub(crate) struct ErrorRetry {
    first: Duration,
    cap: Duration,
    next: Duration,
    at: Option<Instant>,
    last: Option<String>,
}

impl ErrorRetry {
    /// Retries after `first`, doubling up to `cap`.
    pub(crate) fn new(first: Duration, cap: Duration) -> Self {
        ErrorRetry {
            first,
            cap: cap.max(first),
            next: first,
            at: None,
            last: None,
        }
    }

    /// An attempt at `now` failed with `error`: schedules the next one and
    /// says whether to report it (it differs from the last failure).
    pub(crate) fn failed(&mut self, now: Instant, error: &Error) -> bool {
        self.at = Some(now + self.next);
        self.next = (self.next * 2).min(self.cap);
        let message = error.to_string();
        let fresh = self.last.as_deref() != Some(message.as_str());
        self.last = Some(message);
        fresh
    }

    /// An attempt worked: the next failure starts afresh.
    pub(crate) fn succeeded(&mut self) {
        self.next = self.first;
        self.at = None;
        self.last = None;
    }

    /// The wait is over at `now`: [`retry_at`](Self::retry_at) says
    /// nothing more until the next failure (the backoff and the last error
    /// are kept).
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.at.is_some_and(|t| now >= t) {
            self.at = None;
        }
    }

    /// When the next attempt is due, while waiting for it.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.at
    }

    /// Whether an attempt at `now` must still wait.
    pub(crate) fn waiting(&self, now: Instant) -> bool {
        self.at.is_some_and(|t| now < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_reports_each_distinct_error_once_and_resets() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut r = ErrorRetry::new(ms(100), ms(350));
        let source = |reason: &str| Error::Plugin {
            what: "partition source",
            reason: reason.into(),
        };
        let down = source("down");
        assert!(r.failed(t0, &down), "the first failure is reported");
        assert_eq!(r.retry_at(), Some(t0 + ms(100)));
        assert!(r.waiting(t0 + ms(99)) && !r.waiting(t0 + ms(100)));
        assert!(!r.failed(t0, &down), "the same error is not reported again");
        assert_eq!(r.retry_at(), Some(t0 + ms(200)));
        assert!(!r.failed(t0, &down));
        assert_eq!(r.retry_at(), Some(t0 + ms(350)), "capped");
        assert!(r.failed(t0, &source("other")), "a new error is");
        r.succeeded();
        assert_eq!(r.retry_at(), None);
        assert!(r.failed(t0, &down), "after a success, reported again");
        assert_eq!(r.retry_at(), Some(t0 + ms(100)));
    }
}
