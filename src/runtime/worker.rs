//! The heartbeat thread: drives this worker's [`HeartbeatNode`] (heartbeats,
//! its assignments, self-fencing, the callback watchdog, the departure) and
//! carries its effects to the shared state and the callback thread.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select_biased, Receiver};

use crate::core::heartbeat::{HeartbeatEffect, HeartbeatNode};
use crate::core::ops::Reply;
use crate::runtime::hooks::Job;
use crate::runtime::rewatch::Rewatch;
use crate::runtime::shared::Shared;
use crate::store::{KvError, KvStore, Watch};

/// What the manager can ask of the heartbeat thread.
pub(crate) enum Command {
    /// Announce the departure and release everything.
    Leave,
    /// Release everything now (the drain took too long), delete the key and
    /// exit.
    Quit,
}

pub(crate) struct WorkerThread {
    pub id: String,
    pub node: HeartbeatNode,
    pub shared: Arc<Shared>,
    pub workers: Arc<dyn KvStore>,
    pub assignments: Arc<dyn KvStore>,
    pub commands: Receiver<Command>,
    pub applied: Receiver<u64>,
    pub retry_every: Duration,
}

/// Whether the thread goes on after an effect.
#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    End,
}

impl WorkerThread {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        let name = format!("parti-heartbeat-{}", self.id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
    }

    fn open_watch(&self) -> Option<Watch> {
        self.shared.watch(self.assignments.as_ref(), &self.id)
    }

    fn run(mut self) {
        let mut watch = Rewatch::new(self.open_watch(), self.retry_every);
        let lease_resets = self.shared.lease_resets();
        while self.step() == Flow::Go {
            let (events, timer) = watch.waits(self.node.poll_timeout());
            select_biased! {
                recv(self.commands) -> cmd => match cmd {
                    Ok(Command::Leave) => self.node.leave(Instant::now()),
                    Ok(Command::Quit) | Err(_) => self.node.quit(Instant::now()),
                },
                recv(self.applied) -> v => {
                    if let Ok(v) = v {
                        self.node.handle_applied(Instant::now(), v);
                    }
                }
                recv(events) -> ev => match ev {
                    Ok(ev) => {
                        self.node.handle_lease_epoch(self.shared.lease_epoch());
                        self.node.handle_watch(Instant::now(), ev);
                    }
                    Err(_) => {
                        watch.ended_reporting(&self.shared, self.assignments.bucket());
                    }
                },
                recv(lease_resets) -> _ => {
                    self.node.handle_lease_reset(Instant::now(), self.shared.lease_epoch());
                }
                recv(timer) -> _ => self.node.handle_timeout(Instant::now()),
            }
            watch.reopen_if_due(|| self.open_watch());
        }
    }

    /// Performs the node's operations and carries out its effects.
    fn step(&mut self) -> Flow {
        loop {
            while let Some(effect) = self.node.poll_effect() {
                if self.on_effect(effect) == Flow::End {
                    return Flow::End;
                }
            }
            let Some(op) = self.node.poll_op(Instant::now()) else {
                return Flow::Go;
            };
            let reply = op.perform(self.workers.as_ref());
            if let Reply::Written(Ok(revision)) = &reply {
                self.shared.record_beat(*revision);
            }
            self.shared.progressed();
            self.node.handle_reply(Instant::now(), reply);
        }
    }

    fn on_effect(&mut self, effect: HeartbeatEffect) -> Flow {
        match effect {
            HeartbeatEffect::Install {
                assignment,
                has_assignment,
            } => self.shared.install(assignment, has_assignment),
            HeartbeatEffect::Prepare {
                partitions,
                until,
                version,
            } => self.shared.send(Job::Prepare {
                partitions,
                until,
                version,
            }),
            HeartbeatEffect::Degraded(on) => {
                if on {
                    self.shared.metrics.store_incident();
                }
                self.shared.set_degraded(on)
            }
            HeartbeatEffect::Beat => self.shared.heartbeat_confirmed(),
            HeartbeatEffect::BeatFailed => self.shared.metrics.heartbeat_failure(),
            HeartbeatEffect::Drained => self.shared.set_drained(),
            HeartbeatEffect::Report(e) => self.shared.report(e),
            HeartbeatEffect::StoreWentBack => {
                let bucket = self.workers.bucket();
                self.shared
                    .store_forgot(KvError::Forgot(bucket.into()), bucket);
                // The lease's epochs are issued again too: the election's
                // record of them and everyone reading it start over.
                self.shared.reset_lease_epoch();
            }
            HeartbeatEffect::IdLost => {
                self.shared.set_shutdown();
                return Flow::End;
            }
            HeartbeatEffect::Exited => return Flow::End,
        }
        Flow::Go
    }
}
