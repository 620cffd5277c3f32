//! The election thread: drives the [`ElectionNode`] (campaign, renewals,
//! takeover, resigning, release on stop), runs the leader thread while this
//! worker holds the lease, and pushes the lease's epoch to the heartbeat
//! node and its validity to the leader term.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::core::election::{ElectionEffect, ElectionInput, ElectionNode};
use crate::core::heartbeat::HeartbeatInput;
use crate::core::leader::LeaderInput;
use crate::core::node::Node;
use crate::names::LEADER_KEY;
use crate::runtime::driver::{Driver, Flow};
use crate::runtime::leader::{LeaderContext, LeaderThread};
use crate::runtime::shared::Shared;
use crate::store::{KvError, KvStore};
use crate::Error;

pub(crate) struct ElectionThread {
    pub id: String,
    pub node: ElectionNode,
    pub shared: Arc<Shared>,
    pub store: Arc<dyn KvStore>,
    pub stop: Receiver<()>,
    /// Resignations, from the leader thread.
    pub inputs: (Sender<ElectionInput>, Receiver<ElectionInput>),
    /// The heartbeat node's inputs: the lease epochs go there.
    pub heartbeat: Sender<HeartbeatInput>,
    pub leader: LeaderContext,
    /// The leader terms' inputs (see [`LeaderContext::inputs`]).
    pub leader_inputs: Sender<LeaderInput>,
    pub retry_every: Duration,
}

struct RunningLeader {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

/// The election's sink: what its effects do to the manager.
struct Sink {
    id: String,
    shared: Arc<Shared>,
    leader: LeaderContext,
    leader_inputs: Sender<LeaderInput>,
    heartbeat: Sender<HeartbeatInput>,
    resign: Sender<ElectionInput>,
    running: Option<RunningLeader>,
}

impl ElectionThread {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        let name = format!("parti-election-{}", self.id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
    }

    fn run(self) {
        let store = self.store.clone();
        let mut driver = Driver::new(self.node, move |op| op.perform(store.as_ref()))
            .stop(self.stop)
            .inputs(self.inputs.1)
            .watch(
                self.retry_every,
                &self.shared,
                &self.store,
                Some(LEADER_KEY),
            );
        let mut sink = Sink {
            id: self.id,
            shared: self.shared,
            leader: self.leader,
            leader_inputs: self.leader_inputs,
            heartbeat: self.heartbeat,
            resign: self.inputs.0,
            running: None,
        };
        let mut on_effect = |node: &mut ElectionNode, e| sink.on_effect(node, e);
        driver.run(&mut on_effect);
        // Hand the lease over at once instead of letting it expire.
        driver
            .node
            .handle_input(Instant::now(), ElectionInput::Release);
        driver.step(&mut on_effect);
        sink.stop_leader();
    }
}

impl Sink {
    fn on_effect(&mut self, node: &mut ElectionNode, effect: ElectionEffect) -> Flow {
        match effect {
            ElectionEffect::Settled => self.shared.set_startup(None),
            ElectionEffect::Acquired { epoch } => {
                log::info!("[{}] acquired leadership, epoch {epoch}", self.id);
                let _ = self.heartbeat.send(HeartbeatInput::LeaseEpoch(epoch));
                self.shared.set_leader(true);
                self.start_leader(epoch, node.valid_until());
            }
            ElectionEffect::Lost => {
                log::info!("[{}] lost leadership", self.id);
                self.stop_leader();
                self.shared.set_leader(false);
            }
            ElectionEffect::Epoch(epoch) => {
                let _ = self.heartbeat.send(HeartbeatInput::LeaseEpoch(epoch));
            }
            // Lease revisions start again from 1: the epochs seen before no
            // longer count.
            ElectionEffect::EpochReset => {
                let _ = self.heartbeat.send(HeartbeatInput::LeaseReset(0));
            }
            ElectionEffect::Valid(until) => {
                if self.running.is_some() {
                    let _ = self.leader_inputs.send(LeaderInput::Lease(until));
                }
            }
            ElectionEffect::Report(e) => self.shared.report(e),
        }
        Flow::Go
    }

    fn start_leader(&mut self, epoch: u64, valid_until: Option<Instant>) {
        let (stop, stop_rx) = crossbeam_channel::bounded(0);
        // The previous term is over: what it left unread is stale (a new
        // term reads the source anyway).
        while self.leader.inputs.try_recv().is_ok() {}
        let thread = LeaderThread {
            ctx: self.leader.clone(),
            shared: self.shared.clone(),
            epoch,
            valid_until,
            stop: stop_rx,
            resign: self.resign.clone(),
        };
        match thread.spawn() {
            Ok(handle) => self.running = Some(RunningLeader { stop, handle }),
            Err(e) => self.shared.report(Error::Kv(KvError::Other(format!(
                "cannot spawn leader thread: {e}"
            )))),
        }
    }

    fn stop_leader(&mut self) {
        if let Some(r) = self.running.take() {
            drop(r.stop);
            let _ = r.handle.join();
            self.shared.set_leader_phase(None);
        }
    }
}
