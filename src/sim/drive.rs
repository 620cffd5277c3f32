//! The one stepper of the simulator: what `runtime::driver` does for a
//! thread, done for a simulated one over its process's link ([`Io`]) —
//! the answer that is due, nothing else while the thread still waits for
//! one, then its queued inputs, its watch's events (or its end, with the
//! store-forgot flag, and its reopening), its timeout, and its operations
//! until one is answered late; every effect goes to the caller's sink.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::TryRecvError;

use crate::core::node::{pump, Flow, Node};
use crate::core::ops::Bucket;
use crate::store::Watch;

use super::ops::{Io, Thread};

/// The wiring of one simulated thread around its node.
pub(crate) struct Stepper<N: Node> {
    thread: Thread,
    inputs: VecDeque<N::Input>,
    /// The bucket and key the node watches (`None`: no watch).
    watches: Option<(Bucket, Option<String>)>,
    watch: Option<Watch>,
    reopen_at: Instant,
    every: Duration,
}

impl<N: Node> Stepper<N> {
    /// `thread`'s stepper; its watch of `watches` is opened at the first
    /// step and, after it ended or failed to open, again every `every`.
    pub fn new(
        thread: Thread,
        watches: Option<(Bucket, Option<String>)>,
        every: Duration,
        now: Instant,
    ) -> Self {
        Stepper {
            thread,
            inputs: VecDeque::new(),
            watches,
            watch: None,
            reopen_at: now,
            every,
        }
    }

    /// Queues an input, taken at the thread's next step that does not wait
    /// for an answer.
    pub fn push(&mut self, input: N::Input) {
        self.inputs.push_back(input);
    }

    /// One step of the thread at `now`.
    pub fn step(
        &mut self,
        node: &mut N,
        io: &mut Io,
        now: Instant,
        sink: &mut impl FnMut(&mut N, N::Effect),
    ) {
        if let Some(reply) = io.due(self.thread, now) {
            node.handle_reply(now, reply);
        }
        if !io.blocked(self.thread) {
            self.wake(node, io, now);
            let thread = self.thread;
            let sink = &mut |n: &mut N, e| {
                sink(n, e);
                Flow::Go
            };
            if pump(node, || now, |op| io.issue(thread, op, now), sink) == Flow::Rewatch {
                // As the runtime driver does: a new watch at once.
                self.watch = None;
                self.reopen_at = now;
            }
        }
        drain(node, sink);
    }

    /// What the runtime driver waits on, all that is ready at `now`.
    fn wake(&mut self, node: &mut N, io: &Io, now: Instant) {
        for input in self.inputs.drain(..) {
            node.handle_input(now, input);
        }
        if let (None, Some((bucket, key))) = (&self.watch, &self.watches) {
            if now >= self.reopen_at {
                self.watch = io.stores.of(*bucket).watch(key.as_deref()).ok();
                self.reopen_at = now + self.every;
            }
        }
        let ended = loop {
            let Some(watch) = &self.watch else { break None };
            match watch.events().try_recv() {
                Ok(ev) => node.handle_watch(now, ev),
                Err(TryRecvError::Empty) => break None,
                Err(TryRecvError::Disconnected) => break Some(watch.store_forgot()),
            }
        };
        if let Some(forgot) = ended {
            self.watch = None;
            self.reopen_at = now + self.every;
            node.handle_watch_end(now, forgot);
        }
        if node.poll_timeout().is_some_and(|t| now >= t) {
            node.handle_timeout(now);
        }
    }
}

fn drain<N: Node>(node: &mut N, sink: &mut impl FnMut(&mut N, N::Effect)) {
    while let Some(effect) = node.poll_effect() {
        sink(node, effect);
    }
}
