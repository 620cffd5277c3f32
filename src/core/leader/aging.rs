//! How old a replayed heartbeat is, from what this worker can prove.
//!
//! A new leader's replay of the workers bucket shows each worker's last
//! heartbeat, but not when it was written: counted from the replay, the
//! dead predecessor's own heartbeat would keep its worker alive for a
//! whole `heartbeat_ttl + emergency_grace` after taking office. The bucket's
//! revisions order every write, and this worker knows when the answers to
//! its own heartbeat writes came back. A replayed entry at revision `r` was
//! stored before any of our heartbeats with a larger revision, so before
//! that heartbeat's answer arrived: that instant is a time the worker was
//! certainly last seen by (it may have been earlier, never later), on this
//! process's own monotonic clock — no clock of another machine involved.

use std::collections::VecDeque;
use std::time::Instant;

use crate::store::Revision;

/// How many of our own heartbeats are remembered: at any interval, far more
/// than a heartbeat TTL's worth, and a few kilobytes at most.
const KEPT: usize = 128;

/// This worker's confirmed heartbeat writes: revision, and when the answer
/// came back.
#[derive(Clone, Debug, Default)]
pub struct BeatLog {
    beats: VecDeque<(Revision, Instant)>,
}

impl BeatLog {
    /// Our heartbeat write got `revision`; its answer arrived at `at`.
    /// With one heartbeat write in flight at a time, our revisions only
    /// rise; a lower one means the store forgot (a dropped, emptied or
    /// rolled-back bucket issues revisions again), and dating the new
    /// revisions by the old beats would make every fresh heartbeat look
    /// ancient to a new leader: the log starts again.
    pub fn record(&mut self, revision: Revision, at: Instant) {
        match self.beats.back() {
            Some((r, _)) if *r == revision => return,
            Some((r, _)) if *r > revision => self.beats.clear(),
            _ => {}
        }
        if self.beats.len() == KEPT {
            self.beats.pop_front();
        }
        self.beats.push_back((revision, at));
    }

    /// An instant by which a write at `revision` certainly existed: the
    /// answer to our first heartbeat stored after it. `None` when no
    /// heartbeat of ours remembered came after it.
    pub fn written_by(&self, revision: Revision) -> Option<Instant> {
        let i = self.beats.partition_point(|(r, _)| *r <= revision);
        self.beats.get(i).map(|(_, at)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_entry_is_dated_by_our_first_beat_stored_after_it() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut log = BeatLog::default();
        log.record(10, t0);
        log.record(20, t0 + ms(200));
        log.record(30, t0 + ms(400));
        assert_eq!(log.written_by(5), Some(t0));
        assert_eq!(log.written_by(10), Some(t0 + ms(200)), "not by itself");
        assert_eq!(log.written_by(25), Some(t0 + ms(400)));
        assert_eq!(log.written_by(30), None, "after every beat we know of");
    }

    #[test]
    fn a_lower_revision_means_the_store_forgot_and_the_log_starts_again() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut log = BeatLog::default();
        log.record(500, t0);
        log.record(510, t0 + ms(100));
        // The bucket was dropped: revisions start again.
        log.record(3, t0 + ms(900));
        assert_eq!(
            log.written_by(2),
            Some(t0 + ms(900)),
            "a fresh heartbeat at revision 2 dated by the old beats"
        );
        assert_eq!(log.written_by(3), None);
    }

    #[test]
    fn only_the_latest_beats_are_kept() {
        let t0 = Instant::now();
        let mut log = BeatLog::default();
        for r in 1..=(KEPT as u64 + 10) {
            log.record(r, t0 + Duration::from_millis(r));
        }
        assert_eq!(log.beats.len(), KEPT);
        // Older than every beat kept: dated by the oldest one kept, which
        // is later than the truth, so still a safe bound.
        assert_eq!(log.written_by(1), Some(t0 + Duration::from_millis(11)));
    }
}
