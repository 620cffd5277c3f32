//! The one contract every node follows, after quinn-proto's `Connection`:
//! inputs in through `handle_*`, at most one KV operation out through
//! [`poll_op`](Node::poll_op), effects for the shell through
//! [`poll_effect`](Node::poll_effect), and the latest instant to be woken
//! through [`poll_timeout`](Node::poll_timeout). One driver runs every
//! runtime thread over it (`runtime::driver`), and one stepper every
//! simulated one (`sim::drive`), so both run the same sequences.

use std::time::Instant;

use crate::core::ops::{Op, Reply};
use crate::store::WatchEvent;

/// Whether a driver goes on after an effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Go,
    End,
    /// Go on, with the node's watch opened again at once (the node asked,
    /// see [`Node::poll_rewatch`]).
    Rewatch,
}

/// What every driver does between two waits: hand the node's effects to
/// `sink`, perform its operations with `perform`, and hand it the answers,
/// until it has nothing to do now, an answer comes only later (`None`), or
/// the sink ends the driver (it returns `Go` or `End`; only the node asks
/// for `Rewatch`).
pub(crate) fn pump<N: Node>(
    node: &mut N,
    now: impl Fn() -> Instant,
    mut perform: impl FnMut(Op) -> Option<Reply>,
    sink: &mut impl FnMut(&mut N, N::Effect) -> Flow,
) -> Flow {
    let mut go = Flow::Go;
    loop {
        while let Some(effect) = node.poll_effect() {
            if sink(node, effect) == Flow::End {
                return Flow::End;
            }
        }
        if node.poll_rewatch() {
            go = Flow::Rewatch;
        }
        let Some(op) = node.poll_op(now()) else {
            return go;
        };
        match perform(op) {
            Some(reply) => node.handle_reply(now(), reply),
            None => return go,
        }
    }
}

/// A sans-IO node.
pub(crate) trait Node {
    /// What the shell or other nodes tell it (leave, an applied callback,
    /// the lease's validity, …).
    type Input;
    /// What it tells its shell.
    type Effect;

    /// An input from the shell or another node.
    fn handle_input(&mut self, now: Instant, input: Self::Input);

    /// An event of the node's watch (a node without one ignores it).
    fn handle_watch(&mut self, _now: Instant, _ev: WatchEvent) {}

    /// The node's watch ended; `store_forgot`: because the store forgot
    /// what it had delivered (revisions start again). The driver reopens
    /// it, and its replay re-announces every key.
    fn handle_watch_end(&mut self, _now: Instant, _store_forgot: bool) {}

    /// The answer to the operation last returned by `poll_op`.
    fn handle_reply(&mut self, now: Instant, reply: Reply);

    /// Time passed (called no later than `poll_timeout`).
    fn handle_timeout(&mut self, now: Instant);

    /// The KV operation to perform now, if any (at most one in flight).
    fn poll_op(&mut self, now: Instant) -> Option<Op>;

    /// What the shell must do next.
    fn poll_effect(&mut self) -> Option<Self::Effect>;

    /// Whether the node's watch must be opened again now, its replay
    /// re-announcing every key: the store went back, and a watch resumed
    /// past the revisions it issues again would deliver nothing until the
    /// store passes them (or the watch stalls). Asked once per answer.
    fn poll_rewatch(&mut self) -> bool {
        false
    }

    /// When to call `handle_timeout` at the latest (`None`: only an input
    /// can change anything).
    fn poll_timeout(&self) -> Option<Instant>;
}
