//! The heartbeat thread: drives this worker's [`HeartbeatNode`] (heartbeats,
//! its assignments, self-fencing, the callback watchdog, the departure) and
//! carries its effects to the shared state and the callback thread.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::core::heartbeat::{HeartbeatEffect, HeartbeatInput, HeartbeatNode};
use crate::runtime::driver::{Driver, Flow};
use crate::runtime::hooks::Job;
use crate::runtime::shared::Shared;
use crate::store::{KvError, KvStore};

pub(crate) struct WorkerThread {
    pub id: String,
    pub node: HeartbeatNode,
    pub shared: Arc<Shared>,
    pub workers: Arc<dyn KvStore>,
    pub assignments: Arc<dyn KvStore>,
    /// From the manager (leave, quit), the callback thread (applied
    /// versions) and the election (lease epochs).
    pub inputs: Receiver<HeartbeatInput>,
    /// Told when another process holds this worker ID: the election stops.
    pub election_stop: Sender<()>,
    pub retry_every: Duration,
}

impl WorkerThread {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        let name = format!("parti-heartbeat-{}", self.id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
    }

    fn run(self) {
        let (shared, workers) = (self.shared.clone(), self.workers.clone());
        let mut driver = Driver::new(self.node, move |op| {
            let reply = op.perform(workers.as_ref());
            shared.progressed();
            reply
        })
        .inputs(self.inputs)
        .watch(
            self.retry_every,
            &self.shared,
            &self.assignments,
            Some(&self.id),
        );
        let bucket = self.workers.bucket().to_string();
        let (shared, stop) = (self.shared, self.election_stop);
        driver.run(&mut |_, effect| on_effect(&shared, &stop, &bucket, effect));
    }
}

fn on_effect(shared: &Shared, stop: &Sender<()>, workers: &str, effect: HeartbeatEffect) -> Flow {
    match effect {
        HeartbeatEffect::Install {
            assignment,
            has_assignment,
        } => shared.install(assignment, has_assignment),
        HeartbeatEffect::Prepare {
            partitions,
            until,
            version,
        } => shared.send(Job::Prepare {
            partitions,
            until,
            version,
        }),
        HeartbeatEffect::Degraded(on) => {
            if on {
                shared.metrics.store_incident();
            }
            shared.set_degraded(on)
        }
        HeartbeatEffect::Beat(revision) => {
            shared.record_beat(revision);
            shared.heartbeat_confirmed();
        }
        HeartbeatEffect::BeatFailed => shared.metrics.heartbeat_failure(),
        HeartbeatEffect::Drained => shared.set_drained(),
        HeartbeatEffect::Report(e) => shared.report(e),
        // The node has forgotten the lease epochs it saw (the lease's
        // epochs are issued again too); the election pushes the new ones.
        HeartbeatEffect::StoreWentBack => {
            shared.store_forgot(KvError::Forgot(workers.into()), workers)
        }
        HeartbeatEffect::IdLost => {
            shared.set_shutdown();
            let _ = stop.try_send(());
            return Flow::End;
        }
        HeartbeatEffect::Exited => return Flow::End,
    }
    Flow::Go
}
