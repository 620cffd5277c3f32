//! The election thread: drives the [`ElectionNode`] (campaign, renewals,
//! takeover, resigning, release on stop) and runs the leader thread while
//! this worker holds the lease.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select_biased, Receiver, Sender};

use crate::core::election::{ElectionEffect, ElectionNode};
use crate::names::LEADER_KEY;
use crate::runtime::leader::{LeaderContext, LeaderThread};
use crate::runtime::rewatch::Rewatch;
use crate::runtime::shared::Shared;
use crate::store::{KvError, KvStore, Watch};
use crate::Error;

pub(crate) struct ElectionThread {
    pub id: String,
    pub node: ElectionNode,
    pub shared: Arc<Shared>,
    pub store: Arc<dyn KvStore>,
    pub stop: Receiver<()>,
    pub leader: LeaderContext,
    pub retry_every: Duration,
}

struct RunningLeader {
    stop: Sender<()>,
    handle: JoinHandle<()>,
    resigned: Receiver<()>,
    lease: Sender<Option<Instant>>,
}

impl ElectionThread {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        let name = format!("parti-election-{}", self.id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
    }

    fn open_watch(&self) -> Option<Watch> {
        self.shared.watch(self.store.as_ref(), LEADER_KEY)
    }

    fn run(mut self) {
        let mut watch = Rewatch::new(self.open_watch(), self.retry_every);
        let mut running: Option<RunningLeader> = None;
        loop {
            self.step(&mut running);
            if self.shared.state() == crate::State::Shutdown {
                break;
            }
            let (events, timer) = watch.waits(self.node.poll_timeout());
            let resigned = running
                .as_ref()
                .map(|r| r.resigned.clone())
                .unwrap_or_else(never);
            select_biased! {
                recv(self.stop) -> _ => break,
                recv(resigned) -> _ => self.node.resign(Instant::now()),
                recv(events) -> ev => match ev {
                    Ok(ev) => self.node.handle_watch(Instant::now(), ev),
                    Err(_) => {
                        if watch.ended_reporting(&self.shared, self.store.bucket()) {
                            // Lease revisions start again from 1: forget
                            // the epochs seen before.
                            self.node.handle_store_reset(Instant::now());
                            self.shared.reset_lease_epoch();
                        }
                    }
                },
                recv(timer) -> _ => self.node.handle_timeout(Instant::now()),
            }
            watch.reopen_if_due(|| self.open_watch());
        }
        // Hand the lease over at once instead of letting it expire.
        self.node.release(Instant::now());
        self.step(&mut running);
        stop_leader(&mut running, &self.shared);
    }

    /// Performs the node's operations and carries out its effects.
    fn step(&mut self, running: &mut Option<RunningLeader>) {
        loop {
            while let Some(effect) = self.node.poll_effect() {
                self.on_effect(effect, running);
            }
            let Some(op) = self.node.poll_op(Instant::now()) else {
                break;
            };
            let reply = op.perform(self.store.as_ref());
            if let Some(e) = reply.error() {
                log::debug!("[{}] lease {op:?}: {e}", self.id);
            }
            self.node.handle_reply(Instant::now(), reply);
        }
    }

    fn on_effect(&mut self, effect: ElectionEffect, running: &mut Option<RunningLeader>) {
        match effect {
            ElectionEffect::Settled => self.shared.set_startup(None),
            ElectionEffect::Acquired { epoch } => {
                log::info!("[{}] acquired leadership, epoch {epoch}", self.id);
                self.shared.observe_lease_epoch(epoch);
                self.shared.set_leader(true);
                let (stop, stop_rx) = crossbeam_channel::bounded(0);
                let (resign, resigned) = crossbeam_channel::bounded(1);
                let (lease, lease_rx) = crossbeam_channel::unbounded();
                let thread = LeaderThread {
                    ctx: self.leader.clone(),
                    shared: self.shared.clone(),
                    epoch,
                    valid_until: self.node.valid_until(),
                    stop: stop_rx,
                    lease: lease_rx,
                    resign,
                };
                match thread.spawn() {
                    Ok(handle) => {
                        *running = Some(RunningLeader {
                            stop,
                            handle,
                            resigned,
                            lease,
                        })
                    }
                    Err(e) => self.shared.report(Error::Kv(KvError::Other(format!(
                        "cannot spawn leader thread: {e}"
                    )))),
                }
            }
            ElectionEffect::Lost => {
                log::info!("[{}] lost leadership", self.id);
                stop_leader(running, &self.shared);
                self.shared.set_leader(false);
            }
            ElectionEffect::Epoch(epoch) => self.shared.observe_lease_epoch(epoch),
            ElectionEffect::Valid(until) => {
                if let Some(r) = running {
                    let _ = r.lease.send(until);
                }
            }
            ElectionEffect::Report(e) => self.shared.report(e),
        }
    }
}

fn stop_leader(running: &mut Option<RunningLeader>, shared: &Shared) {
    if let Some(r) = running.take() {
        drop(r.stop);
        let _ = r.handle.join();
        shared.set_leader_phase(None);
    }
}
