//! A worker whose acknowledgement is awaited (a removal, or a record a new
//! leader adopted) but never comes, although the worker heartbeats, may
//! never have seen its record: a third party overwrote the key, or the
//! store lost the write (a rollback, a dropped bucket). Until it
//! acknowledges, what it may hold is given to nobody else, so the group
//! would wait for ever. A worker that heartbeats but reports no version as
//! high as its key's has not seen its grants either, and works on nothing
//! while the leader counts them as placed. After `handoff_timeout` either
//! one's key is written again, at a new version: the fenced write finds
//! the key changed or missing, reads it, reports what it found and replaces
//! it, and the worker applies the new version.

use std::time::Instant;

use super::Calculator;

impl Calculator {
    /// Brings the awaited acknowledgements up to date at `now`: a worker
    /// newly awaited is timed from now, one no longer awaited is dropped,
    /// and one awaited for `handoff_timeout` is due to be told again (its
    /// wait starts over).
    pub(super) fn update_awaited_acks(&mut self, now: Instant) {
        let ledger = &self.ledger;
        // Heartbeating, yet behind its key: it has not seen its record.
        let behind = |w: &str| {
            (self.members.get(w)).is_some_and(|m| {
                m.heard
                    && ledger
                        .key_version(w)
                        .is_some_and(|v| m.told.max(m.applied) < v)
            })
        };
        self.ack_waits
            .retain(|w, _| ledger.awaits_ack(w) || behind(w));
        let awaited = ledger.awaiting_ack().chain(
            (self.members.keys())
                .map(String::as_str)
                .filter(|w| behind(w)),
        );
        for w in awaited {
            if !self.ack_waits.contains_key(w) {
                self.ack_waits.insert(w.to_string(), now);
            }
        }
        let due: Vec<String> = (self.ack_waits.iter())
            .filter(|(_, since)| {
                now.saturating_duration_since(**since) >= self.config.handoff_timeout
            })
            .map(|(w, _)| w.clone())
            .collect();
        for w in due {
            log::info!(
                "[{}] {w} has not acknowledged its record for {:?}: writing it again",
                self.leader,
                self.config.handoff_timeout
            );
            self.ack_waits.insert(w.clone(), now);
            self.retell.insert(w);
            self.dirty = true;
        }
    }

    /// When an awaited acknowledgement is next due to be asked for again.
    pub(super) fn next_retell(&self) -> Option<Instant> {
        self.ack_waits
            .values()
            .min()
            .map(|t| *t + self.config.handoff_timeout)
    }
}
