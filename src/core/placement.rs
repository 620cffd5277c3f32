//! The leader's placement by label, beside the calculator: partitions
//! parked because no live worker carries their required labels, their spill
//! after `Config::label_spill_grace`, and what each future owner was told is
//! on its way (its `incoming` list, for `on_prepare`). Pure, like the
//! calculator that calls it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use crate::core::ledger::Addressee;
use crate::strategy::WorkerInfo;
use crate::{Config, Partition, Placement};

/// Parked and spilled partitions, and the announcements made.
#[derive(Debug, Default)]
pub(crate) struct Parking {
    /// Parked partition id -> since when.
    parked: BTreeMap<String, Instant>,
    /// Placed without their required labels after the grace, until an
    /// eligible worker is live again.
    spilled: BTreeSet<String>,
    /// Per worker: the addressee and the ids its last written record
    /// announced as incoming.
    told: BTreeMap<String, (Addressee, BTreeSet<String>)>,
}

impl Parking {
    /// The partitions as the strategy should see them now: required labels
    /// that no live worker carries are dropped from a partition that has
    /// been parked for the spill grace (or was spilled already), so any
    /// worker may take it.
    pub(crate) fn constrained<'a>(
        &mut self,
        config: &Config,
        now: Instant,
        workers: &[WorkerInfo],
        partitions: &'a [Partition],
    ) -> Cow<'a, [Partition]> {
        if partitions.iter().all(|p| p.required_labels().is_empty()) {
            self.spilled.clear();
            return Cow::Borrowed(partitions);
        }
        let grace = config.label_spill_grace;
        let mut eligible: BTreeMap<&BTreeMap<String, String>, bool> = BTreeMap::new();
        let mut out = Cow::Borrowed(partitions);
        for (i, p) in partitions.iter().enumerate() {
            let req = p.required_labels();
            if req.is_empty() {
                continue;
            }
            let any = *eligible
                .entry(req)
                .or_insert_with(|| workers.iter().any(|w| w.matches(req)));
            if any {
                self.spilled.remove(p.id());
                continue;
            }
            let due = grace.is_some_and(|g| {
                self.parked
                    .get(p.id())
                    .is_some_and(|since| now >= *since + g)
            });
            if due || self.spilled.contains(p.id()) {
                self.spilled.insert(p.id().to_string());
                out.to_mut()[i] = unconstrained(p);
            }
        }
        out
    }

    /// Records which partitions the new `target` leaves parked (those with
    /// required labels it does not place). A partition whose spill was due
    /// but that is still parked (no worker at all, or a strategy that placed
    /// it nowhere) starts its grace again, so that a spill is not due again
    /// at every tick.
    pub(crate) fn placed(
        &mut self,
        config: &Config,
        now: Instant,
        partitions: &[Partition],
        target: &Placement,
    ) {
        if partitions.iter().all(|p| p.required_labels().is_empty()) {
            self.parked.clear();
            return;
        }
        let placed: HashSet<&str> = target.values().flatten().map(|p| p.id()).collect();
        let before = std::mem::take(&mut self.parked);
        for p in partitions {
            if p.required_labels().is_empty() || placed.contains(p.id()) {
                continue;
            }
            let spilled = self.spilled.remove(p.id());
            let since = before
                .get(p.id())
                .copied()
                .filter(|since| {
                    !spilled && config.label_spill_grace.is_none_or(|g| now < *since + g)
                })
                .unwrap_or(now);
            self.parked.insert(p.id().to_string(), since);
        }
    }

    /// Parked partition ids, sorted.
    pub(crate) fn parked_ids(&self) -> Vec<String> {
        self.parked.keys().cloned().collect()
    }

    /// When the first parked partition may spill (`None`: no grace set, or
    /// nothing parked).
    pub(crate) fn spill_at(&self, config: &Config) -> Option<Instant> {
        let grace = config.label_spill_grace?;
        self.parked.values().min().map(|since| *since + grace)
    }

    /// Workers (among `addressees`) that have partitions on their way in
    /// `moving` that their last written record did not announce.
    pub(crate) fn newly_incoming(
        &self,
        moving: &BTreeMap<String, Vec<String>>,
        addressees: &BTreeMap<String, Addressee>,
    ) -> Vec<String> {
        moving
            .iter()
            .filter(|(w, ids)| {
                let Some(addressee) = addressees.get(*w) else {
                    return false;
                };
                !self.told.get(*w).is_some_and(|(a, told)| {
                    a == addressee && ids.iter().all(|id| told.contains(id))
                })
            })
            .map(|(w, _)| w.clone())
            .collect()
    }

    /// `worker`'s record, addressed to `addressee`, announces `ids`.
    pub(crate) fn told(&mut self, worker: &str, addressee: &Addressee, ids: &[String]) {
        self.told.insert(
            worker.to_string(),
            (addressee.clone(), ids.iter().cloned().collect()),
        );
    }
}

/// The partition without its required labels (its weight and preferred
/// labels kept).
fn unconstrained(p: &Partition) -> Partition {
    p.preferred_labels()
        .iter()
        .fold(Partition::with_weight(p.id(), p.weight()), |q, (k, v)| {
            q.prefer_label(k.clone(), v.clone())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn vip(id: &str) -> Partition {
        Partition::new(id).require_label("pool", "vip")
    }

    #[test]
    fn parked_until_the_grace_then_spilled_then_home_again() {
        let t0 = Instant::now();
        let config = Config {
            label_spill_grace: Some(Duration::from_secs(5)),
            ..Config::default()
        };
        let parts = vec![vip("p0"), Partition::new("p1")];
        let plain = vec![WorkerInfo::new("w0")];
        let mut k = Parking::default();
        let seen = k.constrained(&config, t0, &plain, &parts);
        assert_eq!(seen[0], parts[0], "not yet parked: constraint kept");
        let target: Placement = [("w0".to_string(), vec![parts[1].clone()])].into();
        k.placed(&config, t0, &parts, &target);
        assert_eq!(k.parked_ids(), ["p0"]);
        assert_eq!(k.spill_at(&config), Some(t0 + Duration::from_secs(5)));
        let t5 = t0 + Duration::from_secs(5);
        let seen = k.constrained(&config, t5, &plain, &parts);
        assert!(seen[0].required_labels().is_empty(), "spilled");
        let target: Placement = [("w0".to_string(), seen.to_vec())].into();
        k.placed(&config, t5, &parts, &target);
        assert!(k.parked_ids().is_empty());
        // Still no vip worker: stays spilled; once one is live, constrained.
        let seen = k.constrained(&config, t5, &plain, &parts);
        assert!(seen[0].required_labels().is_empty());
        let both = vec![
            WorkerInfo::new("w0"),
            WorkerInfo::new("w1").label("pool", "vip"),
        ];
        let seen = k.constrained(&config, t5, &both, &parts);
        assert_eq!(seen[0], parts[0]);
    }

    #[test]
    fn without_a_grace_parked_for_good() {
        let t0 = Instant::now();
        let config = Config::default();
        let parts = vec![vip("p0")];
        let mut k = Parking::default();
        k.placed(&config, t0, &parts, &Placement::new());
        assert_eq!(k.spill_at(&config), None);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(
            k.constrained(&config, later, &[WorkerInfo::new("w")], &parts)[0],
            parts[0]
        );
    }

    #[test]
    fn a_spill_with_no_worker_at_all_restarts_its_grace() {
        let t0 = Instant::now();
        let g = Duration::from_secs(5);
        let config = Config {
            label_spill_grace: Some(g),
            ..Config::default()
        };
        let parts = vec![vip("p0")];
        let mut k = Parking::default();
        k.placed(&config, t0, &parts, &Placement::new());
        let _ = k.constrained(&config, t0 + g, &[], &parts);
        k.placed(&config, t0 + g, &parts, &Placement::new());
        assert_eq!(k.spill_at(&config), Some(t0 + g + g));
    }

    #[test]
    fn a_due_spill_that_the_round_left_parked_restarts_its_grace() {
        // A round with no worker at all never asks for the constrained
        // partitions (nor does a strategy that placed it nowhere spill it):
        // the spill must not stay due at every tick after.
        let t0 = Instant::now();
        let g = Duration::from_secs(5);
        let config = Config {
            label_spill_grace: Some(g),
            ..Config::default()
        };
        let parts = vec![vip("p0")];
        let mut k = Parking::default();
        k.placed(&config, t0, &parts, &Placement::new());
        k.placed(&config, t0 + g, &parts, &Placement::new());
        assert_eq!(k.spill_at(&config), Some(t0 + g + g));
        k.placed(&config, t0 + g + g / 2, &parts, &Placement::new());
        assert_eq!(k.spill_at(&config), Some(t0 + g + g), "not due: kept");
    }

    #[test]
    fn announcements_are_rewritten_only_when_something_new_comes() {
        let a = Addressee {
            instance: "i".into(),
            incarnation: 0,
        };
        let who: BTreeMap<String, Addressee> = [("w".to_string(), a.clone())].into();
        let moving: BTreeMap<String, Vec<String>> =
            [("w".to_string(), vec!["p".to_string()])].into();
        let mut k = Parking::default();
        assert_eq!(k.newly_incoming(&moving, &who), ["w"]);
        k.told("w", &a, &["p".to_string()]);
        assert!(k.newly_incoming(&moving, &who).is_empty());
        let fresh: BTreeMap<String, Addressee> = [(
            "w".to_string(),
            Addressee {
                instance: "j".into(),
                incarnation: 0,
            },
        )]
        .into();
        assert_eq!(
            k.newly_incoming(&moving, &fresh),
            ["w"],
            "a restarted process was told nothing"
        );
    }
}
