//! The one loop that runs every runtime thread over a [`Node`]: perform the
//! node's operations, hand its effects to the thread's sink, then wait —
//! the stop channel first, then the node's inputs, the thread's signals,
//! its watch (reopened after a pause when it ends) and the node's deadline.
//! A thread is only the wiring of one driver and the sink of its effects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{at, never, select_biased, Receiver};

pub(crate) use crate::core::node::Flow;
use crate::core::node::{pump, Node};
use crate::core::ops::{Op, Reply};
use crate::runtime::shared::Shared;
use crate::store::{KvStore, Watch, WatchEvent};

type Perform = Box<dyn FnMut(&Op) -> Reply + Send>;
type Signal<I> = (Receiver<()>, fn() -> I);

/// A node and everything its thread waits on.
pub(crate) struct Driver<N: Node> {
    pub node: N,
    perform: Perform,
    stop: Option<Receiver<()>>,
    inputs: Option<Receiver<N::Input>>,
    /// Notifications that each stand for one input (queued ones together).
    signal: Option<Signal<N::Input>>,
    watch: Option<Watched>,
}

/// A node's watch of `key` (every key: `None`) in `store`, reopened after
/// a pause when it ends or fails to open (its replay then re-announces
/// every key to the node).
struct Watched {
    watch: Option<Watch>,
    retry_at: Instant,
    every: Duration,
    shared: Arc<Shared>,
    store: Arc<dyn KvStore>,
    key: Option<String>,
}

impl Watched {
    /// Reopens the watch once the pause is over.
    fn reopen_if_due(&mut self) {
        if self.watch.is_none() && Instant::now() >= self.retry_at {
            self.watch = self.shared.watch(self.store.as_ref(), self.key.as_deref());
            self.retry_at = Instant::now() + self.every;
        }
    }

    /// The watch's events (never while it is missing) and a timer at the
    /// node's `deadline`, or earlier when the watch is due to be reopened.
    fn waits(&self, deadline: Option<Instant>) -> (Receiver<WatchEvent>, Receiver<Instant>) {
        let deadline = match &self.watch {
            Some(_) => deadline,
            None => Some(deadline.map_or(self.retry_at, |d| d.min(self.retry_at))),
        };
        let events = self.watch.as_ref().map(|w| w.events().clone());
        (
            events.unwrap_or_else(never),
            deadline.map(at).unwrap_or_else(never),
        )
    }

    /// Opens the watch again now (a replay of what the store holds).
    fn restart(&mut self) {
        self.watch = self.shared.watch(self.store.as_ref(), self.key.as_deref());
        self.retry_at = Instant::now() + self.every;
    }

    /// The watch ended: it is reopened after a pause. Whether it ended
    /// because the store forgot ([`Watch::store_forgot`]), which is
    /// reported ([`Shared::store_forgot`]).
    fn ended(&mut self) -> bool {
        let forgot = self.watch.take().is_some_and(|w| w.store_forgot());
        self.retry_at = Instant::now() + self.every;
        if forgot {
            let bucket = self.store.bucket();
            let e = crate::store::KvError::Forgot(bucket.to_string());
            self.shared.store_forgot(e, bucket);
        }
        forgot
    }
}

impl<N: Node> Driver<N> {
    /// Drives `node`, performing its operations with `perform` (on the
    /// store of the operation's bucket).
    pub fn new(node: N, perform: impl FnMut(&Op) -> Reply + Send + 'static) -> Self {
        Driver {
            node,
            perform: Box::new(perform),
            stop: None,
            inputs: None,
            signal: None,
            watch: None,
        }
    }

    /// Ends the loop on a message or once every sender is gone.
    pub fn stop(mut self, stop: Receiver<()>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The node's inputs; once every sender is gone nobody can direct the
    /// node any more, and the loop ends.
    pub fn inputs(mut self, inputs: Receiver<N::Input>) -> Self {
        self.inputs = Some(inputs);
        self
    }

    /// Each notification on `signal` is the input `make()`.
    pub fn signal(mut self, signal: Option<Receiver<()>>, make: fn() -> N::Input) -> Self {
        self.signal = signal.map(|s| (s, make));
        self
    }

    /// The node's watch of `key` (every key: `None`) in `store`, opened
    /// now and, after it ended or failed to open, again every `every`; one
    /// that ended because the store forgot is reported.
    pub fn watch(
        mut self,
        every: Duration,
        shared: &Arc<Shared>,
        store: &Arc<dyn KvStore>,
        key: Option<&str>,
    ) -> Self {
        self.watch = Some(Watched {
            watch: shared.watch(store.as_ref(), key),
            retry_at: Instant::now() + every,
            every,
            shared: shared.clone(),
            store: store.clone(),
            key: key.map(str::to_string),
        });
        self
    }

    /// Steps and waits until the sink, the stop channel or the end of the
    /// inputs ends it (or nothing is left that could wake the node).
    pub fn run(&mut self, sink: &mut impl FnMut(&mut N, N::Effect) -> Flow) {
        while self.step(sink) != Flow::End && self.wait() == Flow::Go {}
    }

    /// Performs the node's operations and hands out its effects, until it
    /// has nothing more to do now; reopens the watch when the sink asks.
    pub fn step(&mut self, sink: &mut impl FnMut(&mut N, N::Effect) -> Flow) -> Flow {
        let perform = &mut self.perform;
        let perform = |op: Op| {
            let reply = perform(&op);
            if let Some(e) = reply.error() {
                log::debug!("{op:?}: {e}");
            }
            Some(reply)
        };
        let flow = pump(&mut self.node, Instant::now, perform, sink);
        if flow == Flow::Rewatch {
            if let Some(w) = &mut self.watch {
                w.restart();
            }
        }
        flow
    }

    /// Waits for one thing, stop first, and hands it to the node.
    fn wait(&mut self) -> Flow {
        let deadline = self.node.poll_timeout();
        let (events, timer) = match &self.watch {
            Some(w) => w.waits(deadline),
            None => (never(), deadline.map(at).unwrap_or_else(never)),
        };
        let (stop, inputs) = (self.stop.clone(), self.inputs.clone());
        if stop.is_none() && inputs.is_none() && self.watch.is_none() && deadline.is_none() {
            return Flow::End;
        }
        let signal = self.signal.as_ref().map(|(s, _)| s.clone());
        select_biased! {
            recv(stop.unwrap_or_else(never)) -> _ => return Flow::End,
            recv(inputs.unwrap_or_else(never)) -> input => match input {
                Ok(input) => self.node.handle_input(Instant::now(), input),
                Err(_) => return Flow::End,
            },
            recv(signal.unwrap_or_else(never)) -> msg => match (msg, &self.signal) {
                (Ok(()), Some((signal, make))) => {
                    // One input covers every notification queued so far.
                    while signal.try_recv().is_ok() {}
                    self.node.handle_input(Instant::now(), make());
                }
                // A disconnected channel is always ready: waited on no more.
                _ => self.signal = None,
            },
            recv(events) -> ev => match ev {
                Ok(ev) => {
                    self.node.handle_watch(Instant::now(), ev);
                    // Take everything already queued before deciding.
                    while let Ok(ev) = events.try_recv() {
                        self.node.handle_watch(Instant::now(), ev);
                    }
                }
                Err(_) => {
                    let forgot = self.watch.as_mut().is_some_and(Watched::ended);
                    self.node.handle_watch_end(Instant::now(), forgot);
                }
            },
            recv(timer) -> _ => self.node.handle_timeout(Instant::now()),
        }
        if let Some(w) = &mut self.watch {
            w.reopen_if_due();
        }
        Flow::Go
    }
}
