//! The leader thread of a simulated process: the shipped [`LeaderNode`],
//! driven like `runtime::leader` drives it, over the process's link. The
//! partition source answers with the run's partition list.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::core::leader::{BeatLog, LeaderEffect, LeaderNode, LeaderParams};
use crate::store::Watch;

use super::node::Notes;
use super::ops::{Io, Thread};
use super::watches::drain;
use super::Env;

/// One term of leadership.
pub(crate) struct Leader {
    node: LeaderNode,
    epoch: u64,
    watch: Option<Watch>,
}

impl Leader {
    /// A term with `epoch` that starts taking office at `now`.
    pub fn new(env: &Env, io: &Io, id: &str, epoch: u64, now: Instant, beats: &BeatLog) -> Leader {
        let params = LeaderParams {
            id: id.to_string(),
            config: env.config.clone(),
            strategy: env.strategy.clone(),
            refresh_every: None,
            buckets: ("workers".into(), "assignments".into()),
        };
        let mut node = LeaderNode::new(params, epoch, now);
        node.handle_beats(beats.clone());
        Leader {
            node,
            epoch,
            watch: io.stores.workers.watch(None).ok(),
        }
    }

    /// One step of the thread. `valid_until` is the lease as the election
    /// last said.
    pub fn step(
        &mut self,
        env: &Env,
        io: &mut Io,
        valid_until: Option<Instant>,
        now: Instant,
        notes: &mut Notes,
    ) {
        self.node.handle_lease(valid_until);
        if let Some(reply) = io.due(Thread::Leader, now) {
            self.node.handle_reply(now, reply);
        }
        if io.blocked(Thread::Leader) {
            return;
        }
        if self.watch.is_none() {
            self.watch = io.stores.workers.watch(None).ok();
        }
        // An ended watch is reopened at the next step (its replay
        // re-announces every worker).
        for ev in drain(&mut self.watch).0 {
            self.node.handle_watch(now, ev);
        }
        if self.node.poll_timeout().is_some_and(|t| now >= t) {
            self.node.handle_timeout(now);
        }
        loop {
            self.effects(env, io, now, notes);
            let Some(op) = self.node.poll_op(now) else {
                break;
            };

            match io.issue(Thread::Leader, op, now) {
                Some(reply) => self.node.handle_reply(now, reply),
                _ => break,
            }
        }
        self.effects(env, io, now, notes);
    }

    fn effects(&mut self, env: &Env, io: &Io, now: Instant, notes: &mut Notes) {
        while let Some(effect) = self.node.poll_effect() {
            match effect {
                LeaderEffect::ReadSource => {
                    self.node.handle_source(now, Ok(env.partitions.to_vec()))
                }
                LeaderEffect::Report(e) => notes.reports.push(e.to_string()),
                LeaderEffect::InOffice => {
                    io.stores
                        .office
                        .epoch
                        .fetch_max(self.epoch, Ordering::SeqCst);
                }
                // The simulated strategy never panics.
                LeaderEffect::Phase(_)
                | LeaderEffect::Rebalanced(_)
                | LeaderEffect::Parked(_)
                | LeaderEffect::Measured(_)
                | LeaderEffect::Resign => {}
            }
        }
    }

    /// The calculator's current phase, once in office.
    pub fn phase(&self) -> Option<crate::core::calculator::Phase> {
        self.node.phase()
    }
}
