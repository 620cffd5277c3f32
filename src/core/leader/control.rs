//! Operator requests (`parti drain|undrain|rebalance`): the record lives in
//! the assignments bucket under [`CONTROL_KEY`], so it outlasts leaders; a
//! term reads it while taking office and again whenever the nudge the CLI
//! writes under the same key in the workers bucket (which the leader
//! watches) shows up. The calculator does the rest.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::core::ops::{Bucket, Op, Reply};
use crate::store::Entry;
use crate::wire::{self, ControlRecord, CONTROL_KEY};

use super::{InFlight, LeaderEffect, LeaderNode};

/// A term's view of the operator's requests.
#[derive(Debug, Default)]
pub(super) struct Control {
    /// The record must be read (again).
    wanted: bool,
    /// A failed read is retried then.
    retry_at: Option<Instant>,
    /// The record read while taking office, applied on adoption.
    adopted: Option<ControlRecord>,
    /// The rebalance counter this term has acted on (`None`: not read yet;
    /// a request older than the term is not replayed).
    rebalance_seen: Option<u64>,
    drained: BTreeSet<String>,
}

impl Control {
    /// When a failed read is due again.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at.filter(|_| self.wanted)
    }
}

impl LeaderNode {
    /// The nudge in the workers bucket changed: read the record.
    pub(super) fn control_nudged(&mut self) {
        self.control.wanted = true;
    }

    /// The record as read while taking office (`entry`: its key's value).
    pub(super) fn control_read_in_office(&mut self, entry: &Entry) {
        match wire::decode::<ControlRecord>(&self.p.buckets.1, CONTROL_KEY, &entry.value) {
            Ok(rec) => self.control.adopted = Some(rec),
            Err(e) => self.effects.push_back(LeaderEffect::Report(e)),
        }
    }

    /// Applies what was read in office, once the calculator adopted the rest.
    pub(super) fn control_adopt(&mut self) {
        let rec = self.control.adopted.take().unwrap_or_default();
        self.control_apply(rec);
    }

    /// The read of the record, when one is wanted and due.
    pub(super) fn control_op(&mut self, now: Instant) -> Option<Op> {
        if !self.control.wanted || self.control.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        self.control.wanted = false;
        self.in_flight = Some(InFlight::Control);
        Some(Op::Get {
            bucket: Bucket::Assignments,
            key: CONTROL_KEY.to_string(),
        })
    }

    /// The answer to [`control_op`](Self::control_op).
    pub(super) fn control_reply(&mut self, reply: Reply) {
        let rec = match reply {
            Reply::Entry(Ok(None)) => ControlRecord::default(),
            Reply::Entry(Ok(Some(entry))) => {
                match wire::decode::<ControlRecord>(&self.p.buckets.1, CONTROL_KEY, &entry.value) {
                    Ok(rec) => rec,
                    // A record nobody can read changes nothing: the last
                    // good one stays in force.
                    Err(e) => return self.effects.push_back(LeaderEffect::Report(e)),
                }
            }
            other => {
                if let Some(e) = other.error() {
                    self.effects
                        .push_back(LeaderEffect::Report(e.clone().into()));
                }
                self.control.wanted = true;
                self.control.retry_at = Some(self.now + self.retry_every());
                return;
            }
        };
        self.control.retry_at = None;
        self.control_apply(rec);
    }

    fn control_apply(&mut self, rec: ControlRecord) {
        let Some(calc) = self.calc.as_mut() else {
            return;
        };
        let id = &self.p.id;
        let control = &mut self.control;
        if rec.drained != control.drained {
            log::info!("[{id}] drained workers now {:?}", rec.drained);
            control.drained = rec.drained.clone();
        }
        calc.set_drained(rec.drained);
        if control
            .rebalance_seen
            .is_some_and(|seen| rec.rebalance > seen)
        {
            log::info!("[{id}] rebalance requested by an operator");
            calc.request_rebalance();
        }
        control.rebalance_seen = Some(control.rebalance_seen.unwrap_or(0).max(rec.rebalance));
    }
}
