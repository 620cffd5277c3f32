//! A record stamped with an epoch above this term's: a newer leader, or a
//! lease bucket that forgot.
//!
//! Epochs are the lease key's revisions. A bucket deleted and recreated (or
//! rolled back) issues them again from below, and the published records
//! still carry the old, higher ones: taken at their word they would depose
//! every new leader for good. Which one it is, the lease itself tells: a
//! newer leader can only have taken the lease by a compare-and-set that
//! changed its revision, after which none of this term's renewals can
//! succeed. So a renewal *sent after* the outranking record was read, and
//! confirmed, proves that no newer leader holds this lease bucket: the
//! higher epoch is from a history the store forgot. The term then leads on
//! with that epoch + 1, so that epochs in the records keep rising across
//! the loss (workers accept records at or above the lease epoch they saw).
//! A term that really was deposed never gets that proof: its renewals fail
//! and the election ends it.

use std::time::{Duration, Instant};

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

    /// Whether the lease, valid until `valid_until` with a lease of `ttl`,
    /// was renewed by a write sent after the finding (the election reports
    /// validity as the sending of the last confirmed renewal +
    /// `step_down_after(ttl)`).
    pub(crate) fn disproved_by(&self, valid_until: Option<Instant>, ttl: Duration) -> bool {
        let step_down = crate::config::ratios::step_down_after(ttl);
        valid_until.is_some_and(|until| until > self.found_at + step_down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_renewal_sent_after_the_finding_disproves_a_newer_leader() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(4);
        let step_down = crate::config::ratios::step_down_after(ttl);
        let o = Outranked::note(None, 9, t0);
        // Confirmed renewals sent before (or at) the finding prove nothing:
        // a newer leader may have taken the lease after them.
        assert!(!o.disproved_by(Some(t0 + step_down), ttl));
        assert!(!o.disproved_by(Some(t0 - Duration::from_secs(1) + step_down), ttl));
        assert!(!o.disproved_by(None, ttl));
        assert!(o.disproved_by(Some(t0 + Duration::from_millis(1) + step_down), ttl));
        // A later finding keeps the first instant and the highest epoch.
        let o2 = Outranked::note(Some(o), 12, t0 + Duration::from_secs(1));
        assert_eq!(o2.epoch, 12);
        assert_eq!(o2.found_at, t0);
    }
}
