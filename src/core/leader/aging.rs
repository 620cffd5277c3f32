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
pub(crate) struct BeatLog {
    beats: VecDeque<(Revision, Instant)>,
}

impl BeatLog {
    /// Our heartbeat write got `revision`; its answer arrived at `at`.
    ///
    /// Our writes are sequential, so their revisions only rise while the
    /// store remembers: one at or below the last means the store went back
    /// (rolled back, or the bucket recreated) and issues revisions again.
    /// What was recorded before then dates nothing any more — kept, it would
    /// date a heartbeat written after the rollback at a reissued revision by
    /// a beat from before it, and a live worker would be declared dead.
    pub(crate) fn record(&mut self, revision: Revision, at: Instant) {
        if self.beats.back().is_some_and(|(r, _)| *r >= revision) {
            self.beats.clear();
        }
        if self.beats.len() == KEPT {
            self.beats.pop_front();
        }
        self.beats.push_back((revision, at));
    }

    /// Dates a replay's entries (key, revision) for a new leader, given the
    /// revision at which the replay showed this worker's own key. The dates
    /// hold only if the bucket the replay read is the one our beats were
    /// stored in: our own key must stand at or above our last confirmed
    /// beat. Below it (or absent) the store went back since — a rollback
    /// reissues revisions, so an entry written after it would be dated by a
    /// beat from before it — and `None` is returned: nothing is dated, every
    /// worker counts as seen at the takeover, the safe side.
    pub(crate) fn date_replay(
        &self,
        own: Option<Revision>,
        entries: &[(String, Revision)],
    ) -> Option<Vec<(String, Instant)>> {
        let Some(&(last, _)) = self.beats.back() else {
            return Some(Vec::new());
        };
        if own.is_none_or(|r| r < last) {
            return None;
        }
        let dated = entries
            .iter()
            .filter_map(|(key, r)| self.written_by(*r).map(|by| (key.clone(), by)));
        Some(dated.collect())
    }

    /// An instant by which a write at `revision` certainly existed: the
    /// answer to our first heartbeat stored after it. `None` when no
    /// heartbeat of ours remembered came after it.
    pub(crate) fn written_by(&self, revision: Revision) -> Option<Instant> {
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
    fn a_replay_is_dated_only_when_it_shows_our_own_last_beat() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut log = BeatLog::default();
        log.record(40, t0);
        log.record(50, t0 + ms(200));
        let entries = vec![("worker-1".to_string(), 45)];
        assert_eq!(
            log.date_replay(Some(50), &entries),
            Some(vec![("worker-1".to_string(), t0 + ms(200))])
        );
        assert_eq!(
            log.date_replay(Some(51), &entries).map(|d| d.len()),
            Some(1),
            "a beat stored but not yet confirmed"
        );
        // The replay shows our key below our last beat: the store went
        // back, and entry 45 may have been written after that.
        assert_eq!(log.date_replay(Some(12), &entries), None);
        assert_eq!(log.date_replay(None, &entries), None, "our key lost");
        assert_eq!(
            BeatLog::default().date_replay(Some(50), &entries),
            Some(Vec::new())
        );
    }

    #[test]
    fn revisions_issued_again_forget_the_beats_before_them() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut log = BeatLog::default();
        log.record(40, t0);
        log.record(50, t0 + ms(200));
        // The store rolled back: our next beat is stored at 12. An entry
        // at 11, written after the rollback, must not be dated by the beat
        // at 40 from before it.
        log.record(12, t0 + ms(5000));
        assert_eq!(log.written_by(11), Some(t0 + ms(5000)));
        assert_eq!(log.written_by(45), None, "the old beats are gone");
        log.record(12, t0 + ms(5200));
        assert_eq!(
            log.written_by(11),
            Some(t0 + ms(5200)),
            "the same revision twice"
        );
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
