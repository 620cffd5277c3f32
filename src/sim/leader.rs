//! The leader thread of a simulated process: the shipped [`LeaderNode`],
//! stepped by the simulator's one stepper over the process's link. The
//! partition source answers with the run's partition list.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::core::leader::{BeatLog, LeaderEffect, LeaderInput, LeaderNode, LeaderParams};
use crate::core::node::Node;
use crate::core::ops::Bucket;

use super::drive::Stepper;
use super::node::Notes;
use super::ops::{Io, Thread};
use super::Env;

/// One term of leadership.
pub(crate) struct Leader {
    node: LeaderNode,
    epoch: u64,
    stepper: Stepper<LeaderNode>,
    /// When the term took office.
    pub in_office: Option<Instant>,
    /// `Office::lease_forgot` when the lease was acquired.
    lease_forgot: u64,
}

/// The simulated wall clock at the start of a run, in milliseconds since
/// the Unix epoch (any fixed value does: it only has to run with the
/// simulated time).
const SIM_WALL_START_MS: u64 = 1_800_000_000_000;

impl Leader {
    /// A term with `epoch` that starts taking office at `now`, with the
    /// lease valid until `valid_until`, acquired when the lease bucket had
    /// forgotten `lease_forgot` times.
    pub fn new(
        env: &Env,
        id: &str,
        (epoch, lease_forgot): (u64, u64),
        now: Instant,
        beats: BeatLog,
        valid_until: Option<Instant>,
    ) -> Leader {
        let params = LeaderParams {
            id: id.to_string(),
            config: env.config.clone(),
            strategy: env.strategy.clone(),
            refresh_every: None,
            buckets: ("workers".into(), "assignments".into()),
        };
        let mut node = LeaderNode::new(params, epoch, now);
        node.handle_input(now, LeaderInput::Lease(valid_until));
        node.handle_input(now, LeaderInput::Beats(beats));
        // One wall clock for every process, read off the simulated time.
        let since = now.saturating_duration_since(env.started);
        let ms = SIM_WALL_START_MS + since.as_millis() as u64;
        node.handle_input(now, LeaderInput::WallClock(ms));
        let every = env.config.heartbeat_interval / 4;
        Leader {
            node,
            epoch,
            stepper: Stepper::new(Thread::Leader, Some((Bucket::Workers, None)), every, now),
            in_office: None,
            lease_forgot,
        }
    }

    /// Queues an input for the term (the lease's validity, from the
    /// election).
    pub fn push(&mut self, input: LeaderInput) {
        self.stepper.push(input);
    }

    /// One step of the thread.
    pub fn step(&mut self, env: &Env, io: &mut Io, now: Instant, notes: &mut Notes) {
        let (office, epoch) = (io.stores.office.clone(), self.epoch);
        // A lease acquired before the lease bucket last forgot (its holder
        // acts on it until it learns, see `core::lease`): its epoch is from
        // the numbering the store forgot, not newer than the terms since.
        let current = office.lease_forgot.load(Ordering::SeqCst) == self.lease_forgot;
        let in_office = &mut self.in_office;
        self.stepper
            .step(&mut self.node, io, now, &mut |node, effect| match effect {
                LeaderEffect::ReadSource => {
                    let partitions = env.partitions.to_vec();
                    node.handle_input(now, LeaderInput::Source(Ok(partitions)))
                }
                LeaderEffect::InOffice => {
                    if current {
                        office.epoch.fetch_max(epoch, Ordering::SeqCst);
                    }
                    *in_office = Some(now);
                }
                LeaderEffect::Report(e) => notes.reports.push(e.to_string()),
                // The simulated strategy never panics.
                LeaderEffect::Phase(_)
                | LeaderEffect::Rebalanced(_)
                | LeaderEffect::Parked(_)
                | LeaderEffect::Measured(_)
                | LeaderEffect::Resign => {}
            });
    }

    /// The calculator's current phase, once in office.
    pub fn phase(&self) -> Option<crate::core::calculator::Phase> {
        self.node.phase()
    }
}
