//! A record stamped with an epoch above this term's: a newer leader, or a
//! lease bucket that forgot.
//!
//! Epochs are the lease key's revisions. A bucket deleted and recreated (or
//! rolled back) issues them again from below, and the published records
//! still carry the old, higher ones: taken at their word they would depose
//! every new leader for good. Which one it is, the lease itself tells. A
//! newer leader can only take the lease after seeing it unchanged for a
//! whole TTL, and by a compare-and-set that makes every later renewal of
//! this term fail; this term acts on its lease only until
//! `step_down_after(ttl)` (3/4 of it) after sending its last confirmed
//! renewal. So if a renewal sent after the record was found is confirmed
//! (a compare-and-set on the revision this term knows), no newer leader can
//! have written it: the higher epoch is from a history the store forgot (or
//! was written by hand). A lease merely still valid when the record was
//! found proves nothing: the store that forgot the records may have
//! forgotten the lease too, and a newer leader may have taken it at once
//! while this term's last renewal still looked good (the simulator's
//! `store` preset: both leaders led on above each other's epoch, and a
//! write stamped with the old one landed over the newer leader's). The term then leads on with that epoch + 1, so that
//! epochs in the records keep rising across the loss (workers accept
//! records at or above the lease epoch they saw). A term that really was
//! deposed never gets that proof: its renewals fail and the election ends
//! it.

use std::time::{Duration, Instant};

use crate::wire::MetaRecord;

/// Whether the summary `meta` was written by another leader under the
/// same `epoch` as this term's (this term being worker `id`'s). Epochs are
/// lease revisions, and a lease bucket that forgot issues them again: two
/// terms, one of them on a lease the store forgot (its holder acts on it
/// until a renewal fails), can then both hold epoch 1, and the fence —
/// which stops writes only below a newer epoch — lets both write (the
/// simulator's `store` preset: the published view listed partitions under
/// two workers, and the world counted the stale term's writes as landing
/// over the newer one's). The summary names its leader; records of
/// workers do not, so the summary is where a term finds its twin. Treated
/// like a higher epoch: the term writes nothing until a renewal sent after
/// the finding is confirmed, then leads on above it.
pub(crate) fn twin(meta: &MetaRecord, epoch: u64, id: &str) -> bool {
    meta.epoch == epoch && meta.leader != id
}

/// An epoch found above this term's, waiting for the lease's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outranked {
    /// The highest epoch found.
    pub epoch: u64,
    /// When it was found: a renewal sent later decides.
    pub found_at: Instant,
}

impl Outranked {
    /// `epoch` found at `now` (keeping the earliest finding, and the highest
    /// epoch).
    pub(crate) fn note(seen: Option<Outranked>, epoch: u64, now: Instant) -> Outranked {
        match seen {
            Some(o) => Outranked {
                epoch: o.epoch.max(epoch),
                found_at: o.found_at,
            },
            None => Outranked {
                epoch,
                found_at: now,
            },
        }
    }

    /// Whether the lease, as the election last reported it (valid until
    /// `valid_until`, `step_down_after` after the send of its last confirmed
    /// renewal), was renewed by a write sent after the epoch was found.
    pub(crate) fn disproved_by(
        &self,
        valid_until: Option<Instant>,
        step_down_after: Duration,
    ) -> bool {
        valid_until
            .and_then(|until| until.checked_sub(step_down_after))
            .is_some_and(|renewed| renewed > self.found_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_of_another_leader_under_this_terms_epoch_is_a_twin() {
        let meta = |epoch, leader: &str| MetaRecord {
            version: 3,
            epoch,
            reason: crate::RebalanceKind::ColdStart,
            leader: leader.into(),
            workers: Default::default(),
            partitions: 0,
            unassigned: 0,
            departed: Default::default(),
            moving: Default::default(),
            parked: Vec::new(),
        };
        assert!(twin(&meta(1, "worker-6"), 1, "worker-7"));
        assert!(!twin(&meta(1, "worker-7"), 1, "worker-7"), "its own");
        assert!(!twin(&meta(0, "worker-6"), 1, "worker-7"), "an older term");
        assert!(
            !twin(&meta(2, "worker-6"), 1, "worker-7"),
            "newer: outranked"
        );
    }

    #[test]
    fn only_a_renewal_sent_after_the_finding_disproves_a_newer_leader() {
        let t0 = Instant::now();
        let step_down = Duration::from_secs(3);
        let ms = Duration::from_millis(1);
        let o = Outranked::note(None, 9, t0);
        // Renewed by a write sent after the finding, and confirmed.
        assert!(o.disproved_by(Some(t0 + step_down + ms), step_down));
        // Still valid when found, from a renewal sent before: the store may
        // have forgotten the lease too, and a newer leader taken it.
        assert!(!o.disproved_by(Some(t0 + step_down - ms), step_down));
        assert!(!o.disproved_by(Some(t0 + ms), step_down));
        // Expired by then, or unknown: a newer leader may have taken it.
        assert!(!o.disproved_by(Some(t0), step_down));
        assert!(!o.disproved_by(Some(t0 - Duration::from_secs(1)), step_down));
        assert!(!o.disproved_by(None, step_down));
        // A later finding keeps the first instant and the highest epoch.
        let o2 = Outranked::note(Some(o), 12, t0 + Duration::from_secs(1));
        assert_eq!(o2.epoch, 12);
        assert_eq!(o2.found_at, t0);
    }
}
