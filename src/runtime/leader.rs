//! The leader thread: drives one term's [`LeaderNode`] while this worker
//! holds the lease — heartbeats in, fenced publications out, the partition
//! source read on the node's request (user code: a panic is caught and ends
//! the term, so that another worker leads).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::core::election::ElectionInput;
use crate::core::leader::{LeaderEffect, LeaderInput, LeaderNode, LeaderParams};
use crate::core::node::Node;
use crate::core::ops::Bucket;
use crate::error::catch_plugin;
use crate::runtime::driver::{Driver, Flow};
use crate::runtime::shared::Shared;
use crate::source::PartitionSource;
use crate::store::KvStore;

/// What a leader thread needs; cloned for each term.
#[derive(Clone)]
pub(crate) struct LeaderContext {
    pub params: LeaderParams,
    pub source: Arc<dyn PartitionSource>,
    pub workers: Arc<dyn KvStore>,
    pub assignments: Arc<dyn KvStore>,
    /// The term's inputs: refresh requests from the manager, the lease's
    /// validity from the election (emptied before each term).
    pub inputs: Receiver<LeaderInput>,
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
    /// Told when this term ends because the user's plug-in code panicked:
    /// the election then hands the lease to another worker.
    pub resign: Sender<ElectionInput>,
}

impl LeaderThread {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        let name = format!("parti-leader-{}", self.ctx.params.id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
    }

    fn run(self) {
        let now = Instant::now();
        let mut node = LeaderNode::new(self.ctx.params.clone(), self.epoch, now);
        node.handle_input(now, LeaderInput::Lease(self.valid_until));
        node.handle_input(now, LeaderInput::Beats(self.shared.beats()));
        node.handle_input(now, LeaderInput::WallClock(unix_ms()));
        let ctx = self.ctx;
        let (workers, assignments) = (ctx.workers.clone(), ctx.assignments.clone());
        let mut driver = Driver::new(node, move |op| match op.bucket() {
            Bucket::Workers => op.perform(workers.as_ref()),
            _ => op.perform(assignments.as_ref()),
        })
        .stop(self.stop)
        .inputs(ctx.inputs.clone())
        .signal(ctx.changes.clone(), || LeaderInput::Refresh)
        .watch(
            ctx.params.config.heartbeat_interval / 4,
            &self.shared,
            &ctx.workers,
            None,
        );
        let (shared, source, resign) = (self.shared, ctx.source, self.resign);
        driver.run(&mut |node, effect| {
            match effect {
                LeaderEffect::ReadSource => {
                    let result = catch_plugin("partition source", || {
                        source.partitions_reporting(&mut |e| shared.report(e))
                    });
                    node.handle_input(Instant::now(), LeaderInput::Source(result));
                }
                LeaderEffect::Resign => {
                    let _ = resign.send(ElectionInput::Resign);
                    return Flow::End;
                }
                LeaderEffect::InOffice => {}
                LeaderEffect::Phase(p) => shared.set_leader_phase(Some(p)),
                LeaderEffect::Rebalanced(kind) => shared.metrics.rebalance(kind),
                LeaderEffect::Measured(m) => super::measure::record(shared.metrics.as_ref(), m),
                LeaderEffect::Parked(n) => shared.metrics.parked_partitions(n),
                LeaderEffect::Report(e) => shared.report(e),
            }
            Flow::Go
        });
    }
}

/// The wall clock in milliseconds since the Unix epoch (0 for a clock set
/// before it: no floor, versions count on as before).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
