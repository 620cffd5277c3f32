//! The leader thread: drives one term's [`LeaderNode`] while this worker
//! holds the lease — heartbeats in, fenced publications out, the partition
//! source read on the node's request (user code: a panic is caught and ends
//! the term, so that another worker leads).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{never, select_biased, Receiver, Sender};

use crate::core::leader::{LeaderEffect, LeaderNode, LeaderParams};
use crate::core::ops::Bucket;
use crate::error::catch_plugin;
use crate::runtime::rewatch::Rewatch;
use crate::runtime::shared::Shared;
use crate::source::PartitionSource;
use crate::store::{KvError, KvStore, Watch};
use crate::Error;

/// What a leader thread needs; cloned for each term.
#[derive(Clone)]
pub(crate) struct LeaderContext {
    pub params: LeaderParams,
    pub source: Arc<dyn PartitionSource>,
    pub workers: Arc<dyn KvStore>,
    pub assignments: Arc<dyn KvStore>,
    pub refresh: Receiver<()>,
    /// The source's own change notifications, if it has any.
    pub changes: Option<Receiver<()>>,
}

pub(crate) struct LeaderThread {
    pub ctx: LeaderContext,
    pub shared: Arc<Shared>,
    pub epoch: u64,
    /// Until when the lease may be acted on, at the start of the term.
    pub valid_until: Option<Instant>,
    pub stop: Receiver<()>,
    /// Every later change of the lease's validity, from the election.
    pub lease: Receiver<Option<Instant>>,
    /// Told when this term ends because the user's plug-in code panicked:
    /// the election thread then hands the lease to another worker.
    pub resign: Sender<()>,
}

impl LeaderThread {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        let name = format!("parti-leader-{}", self.ctx.params.id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
    }

    fn open_watch(&self) -> Option<Watch> {
        match self.ctx.workers.watch(None) {
            Ok(w) => Some(w),
            Err(e) => {
                self.shared.report(Error::Kv(e));
                None
            }
        }
    }

    fn run(self) {
        let mut node = LeaderNode::new(self.ctx.params.clone(), self.epoch, Instant::now());
        node.handle_lease(self.valid_until);
        node.handle_beats(self.shared.beats());
        let retry_every = self.ctx.params.config.heartbeat_interval / 4;
        let mut watch = Rewatch::new(self.open_watch(), retry_every);
        let mut changes = self.ctx.changes.clone().unwrap_or_else(never);
        loop {
            if self.step(&mut node) {
                let _ = self.resign.send(());
                break;
            }
            let (events, timer) = watch.waits(node.poll_timeout());
            select_biased! {
                recv(self.stop) -> _ => break,
                recv(self.lease) -> v => match v {
                    Ok(v) => node.handle_lease(v),
                    Err(_) => break,
                },
                recv(events) -> ev => match ev {
                    Ok(ev) => {
                        node.handle_watch(Instant::now(), ev);
                        // Take everything already queued before deciding.
                        while let Ok(ev) = events.try_recv() {
                            node.handle_watch(Instant::now(), ev);
                        }
                    }
                    Err(_) => {
                        // Going silent would leave a leader that renews its
                        // lease but never publishes: watch again (the
                        // replay re-announces every worker).
                        self.shared.report(Error::Kv(KvError::Unavailable(
                            "workers watch ended".into(),
                        )));
                        // Its replay re-announces every key, whatever the cause.
                        watch.ended_reporting(&self.shared, self.ctx.workers.bucket());
                    }
                },
                recv(self.ctx.refresh) -> _ => node.handle_refresh(Instant::now()),
                recv(changes) -> msg => match msg {
                    Ok(()) => {
                        // One read covers every notification queued so far.
                        while changes.try_recv().is_ok() {}
                        node.handle_refresh(Instant::now());
                    }
                    // The source dropped its sender: it will signal nothing
                    // more, and a disconnected channel is always ready.
                    Err(_) => changes = never(),
                },
                recv(timer) -> _ => node.handle_timeout(Instant::now()),
            }
            watch.reopen_if_due(|| self.open_watch());
        }
    }

    /// Performs the node's operations and carries out its effects; `true`
    /// when the term must end so that another worker leads.
    fn step(&self, node: &mut LeaderNode) -> bool {
        let mut resign = false;
        loop {
            while let Some(effect) = node.poll_effect() {
                resign |= self.on_effect(node, effect);
            }
            if resign {
                return true;
            }
            let Some(op) = node.poll_op(Instant::now()) else {
                return false;
            };
            let store = match op.bucket() {
                Bucket::Workers => &self.ctx.workers,
                _ => &self.ctx.assignments,
            };
            let reply = op.perform(store.as_ref());
            node.handle_reply(Instant::now(), reply);
        }
    }

    fn on_effect(&self, node: &mut LeaderNode, effect: LeaderEffect) -> bool {
        match effect {
            LeaderEffect::ReadSource => {
                let result = catch_plugin("partition source", || {
                    self.ctx
                        .source
                        .partitions_reporting(&mut |e| self.shared.report(e))
                });
                node.handle_source(Instant::now(), result);
            }
            LeaderEffect::InOffice => {}
            LeaderEffect::Phase(p) => self.shared.set_leader_phase(Some(p)),
            LeaderEffect::Rebalanced(kind) => self.shared.metrics.rebalance(kind),
            LeaderEffect::Measured(m) => super::measure::record(self.shared.metrics.as_ref(), m),
            LeaderEffect::Parked(n) => self.shared.metrics.parked_partitions(n),
            LeaderEffect::Report(e) => self.shared.report(e),
            LeaderEffect::Resign => return true,
        }
        false
    }
}
