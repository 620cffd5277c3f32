//! The one loop that runs every runtime thread over a [`Node`]: perform the
//! node's operations, hand its effects to the thread's sink, then wait —
//! the stop channel first, then the node's inputs, the thread's signals,
//! its watch (reopened after a pause when it ends) and the node's deadline.
//! A thread is only the wiring of one driver and the sink of its effects.

use std::time::{Duration, Instant};

use crossbeam_channel::{at, never, Receiver, Select};

use crate::core::node::Node;
use crate::core::ops::{Op, Reply};
use crate::runtime::rewatch::Rewatch;
use crate::store::{Watch, WatchEvent};

/// Whether the thread goes on after an effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Go,
    End,
}

type Perform = Box<dyn FnMut(&Op) -> Reply + Send>;
type Open = Box<dyn FnMut() -> Option<Watch> + Send>;

/// A node and everything its thread waits on.
pub(crate) struct Driver<N: Node> {
    pub node: N,
    perform: Perform,
    stop: Option<Receiver<()>>,
    inputs: Option<Receiver<N::Input>>,
    /// Notifications that each stand for one input (queued ones together).
    signals: Vec<(Receiver<()>, fn() -> N::Input)>,
    watch: Option<(Rewatch, Open)>,
}

/// What woke the driver.
enum Woke<I> {
    Stop,
    Input(I),
    InputsGone,
    Signal(usize),
    SignalGone(usize),
    Event(WatchEvent),
    WatchEnded,
    Timer,
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
            signals: Vec::new(),
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

    /// Each notification on `signal` is the input `make()`; a disconnected
    /// one is not waited on any more (it would always be ready).
    pub fn signal(mut self, signal: Receiver<()>, make: fn() -> N::Input) -> Self {
        self.signals.push((signal, make));
        self
    }

    /// The node's watch, opened by `open` now and, after it ended or failed
    /// to open, again every `every`.
    pub fn watch(
        mut self,
        every: Duration,
        mut open: impl FnMut() -> Option<Watch> + Send + 'static,
    ) -> Self {
        self.watch = Some((Rewatch::new(open(), every), Box::new(open)));
        self
    }

    /// Steps and waits until the sink, the stop channel or the end of the
    /// inputs ends it (or nothing is left that could wake the node).
    pub fn run(&mut self, sink: &mut impl FnMut(&mut N, N::Effect) -> Flow) {
        while self.step(sink) == Flow::Go && self.wait() == Flow::Go {}
    }

    /// Performs the node's operations and hands out its effects, until it
    /// has nothing more to do now.
    pub fn step(&mut self, sink: &mut impl FnMut(&mut N, N::Effect) -> Flow) -> Flow {
        loop {
            while let Some(effect) = self.node.poll_effect() {
                if sink(&mut self.node, effect) == Flow::End {
                    return Flow::End;
                }
            }
            let Some(op) = self.node.poll_op(Instant::now()) else {
                return Flow::Go;
            };
            let reply = (self.perform)(&op);
            if let Some(e) = reply.error() {
                log::debug!("{op:?}: {e}");
            }
            self.node.handle_reply(Instant::now(), reply);
        }
    }

    /// Waits for one thing and hands it to the node.
    fn wait(&mut self) -> Flow {
        let deadline = self.node.poll_timeout();
        let (events, timer) = match &self.watch {
            Some((watch, _)) => watch.waits(deadline),
            None => (never(), deadline.map(at).unwrap_or_else(never)),
        };
        if self.stop.is_none()
            && self.inputs.is_none()
            && self.signals.is_empty()
            && self.watch.is_none()
            && deadline.is_none()
        {
            return Flow::End;
        }
        let woke = self.select(&events, &timer);
        let now = Instant::now();
        match woke {
            Woke::Stop | Woke::InputsGone => return Flow::End,
            Woke::Input(input) => self.node.handle_input(now, input),
            Woke::Signal(i) => {
                let (signal, make) = &self.signals[i];
                // One input covers every notification queued so far.
                while signal.try_recv().is_ok() {}
                self.node.handle_input(now, make());
            }
            Woke::SignalGone(i) => drop(self.signals.remove(i)),
            Woke::Event(ev) => {
                self.node.handle_watch(now, ev);
                // Take everything already queued before deciding.
                while let Ok(ev) = events.try_recv() {
                    self.node.handle_watch(Instant::now(), ev);
                }
            }
            Woke::WatchEnded => {
                let forgot = self.watch.as_mut().is_some_and(|(w, _)| w.ended());
                self.node.handle_watch_end(now, forgot);
            }
            Woke::Timer => self.node.handle_timeout(now),
        }
        if let Some((watch, open)) = &mut self.watch {
            watch.reopen_if_due(open);
        }
        Flow::Go
    }

    fn select(&self, events: &Receiver<WatchEvent>, timer: &Receiver<Instant>) -> Woke<N::Input> {
        let mut sel = Select::new_biased();
        let stop = self.stop.as_ref().map(|r| sel.recv(r));
        let inputs = self.inputs.as_ref().map(|r| sel.recv(r));
        let signals: Vec<usize> = self.signals.iter().map(|(r, _)| sel.recv(r)).collect();
        let watch = sel.recv(events);
        let timed = sel.recv(timer);
        let oper = sel.select();
        let index = oper.index();
        if Some(index) == stop {
            let _ = self.stop.as_ref().map(|r| oper.recv(r));
            return Woke::Stop;
        }
        if let (Some(i), Some(r)) = (inputs, &self.inputs) {
            if index == i {
                return oper.recv(r).map_or(Woke::InputsGone, Woke::Input);
            }
        }
        if let Some(k) = signals.iter().position(|&i| i == index) {
            return match oper.recv(&self.signals[k].0) {
                Ok(()) => Woke::Signal(k),
                Err(_) => Woke::SignalGone(k),
            };
        }
        if index == watch {
            return oper.recv(events).map_or(Woke::WatchEnded, Woke::Event);
        }
        debug_assert_eq!(index, timed);
        let _ = oper.recv(timer);
        Woke::Timer
    }
}
