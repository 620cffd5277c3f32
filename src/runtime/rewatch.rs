//! The watch of a runtime driver, reopened after a pause when it ends (its
//! replay then re-announces every key to the node).

use std::time::{Duration, Instant};

use crossbeam_channel::{at, never, Receiver};

use crate::runtime::shared::Shared;
use crate::store::{KvError, Watch, WatchEvent};

pub(crate) struct Rewatch {
    watch: Option<Watch>,
    retry_at: Instant,
    every: Duration,
}

impl Rewatch {
    /// `watch` as first opened (`None`: failed), reopened every `every`
    /// while it is missing.
    pub fn new(watch: Option<Watch>, every: Duration) -> Self {
        Rewatch {
            watch,
            retry_at: Instant::now() + every,
            every,
        }
    }

    /// What the driver waits on besides its own inputs: the watch's events
    /// (never while it is missing) and a timer at the node's `deadline`, or
    /// earlier when the watch is due to be reopened.
    pub fn waits(&self, deadline: Option<Instant>) -> (Receiver<WatchEvent>, Receiver<Instant>) {
        let events = self
            .watch
            .as_ref()
            .map(|w| w.events().clone())
            .unwrap_or_else(never);
        let deadline = match &self.watch {
            Some(_) => deadline,
            None => Some(deadline.map_or(self.retry_at, |d| d.min(self.retry_at))),
        };
        (events, deadline.map(at).unwrap_or_else(never))
    }

    /// The watch ended: reopen it after a pause. Returns whether it ended
    /// because the store forgot ([`Watch::store_forgot`]).
    pub fn ended(&mut self) -> bool {
        let forgot = self.watch.take().is_some_and(|w| w.store_forgot());
        self.retry_at = Instant::now() + self.every;
        forgot
    }

    /// As [`ended`](Self::ended); a watch of `bucket` that ended because
    /// the store forgot is reported ([`Shared::store_forgot`]).
    pub fn ended_reporting(&mut self, shared: &Shared, bucket: &str) -> bool {
        let forgot = self.ended();
        if forgot {
            shared.store_forgot(KvError::Forgot(bucket.to_string()), bucket);
        }
        forgot
    }

    /// Reopens the watch with `open` once the pause is over.
    pub fn reopen_if_due(&mut self, open: impl FnOnce() -> Option<Watch>) {
        if self.watch.is_none() && Instant::now() >= self.retry_at {
            self.watch = open();
            self.retry_at = Instant::now() + self.every;
        }
    }
}
