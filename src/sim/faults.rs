//! Fault injection: which fault, on whom, for how long, all drawn from the
//! world's seeded generator.

use std::time::{Duration, Instant};

use super::world::World;

impl World<'_> {
    fn pick(&mut self) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.procs.len())
            .filter(|i| self.procs[*i].paused_until.is_none())
            .collect();
        (!candidates.is_empty()).then(|| candidates[self.rng.index(candidates.len())])
    }

    fn id_of(&self, index: usize) -> Option<String> {
        self.procs[index].running().map(|r| r.id.clone())
    }

    /// Maybe injects one fault at `now`.
    pub(crate) fn maybe_inject(&mut self, now: Instant) {
        let p = self.sim.fault_rate * self.sim.step.as_secs_f64();
        if !self.rng.chance(p) {
            return;
        }
        self.report.faults += 1;
        if self.sim.ops_share > 0.0 && self.rng.chance(self.sim.ops_share) {
            if self.user_action(now) {
                self.disturb(now);
            }
            return;
        }
        self.disturb(now);
        if self.sim.store_share > 0.0 && self.rng.chance(self.sim.store_share) {
            self.store_fault(now);
            return;
        }
        if self.sim.source_share > 0.0 && self.rng.chance(self.sim.source_share) {
            self.source_change();
            return;
        }
        let ttl = self.env.config.heartbeat_ttl;
        let lease = self.env.config.election_ttl;
        let long = ttl.max(lease) * 2;
        let Some(i) = self.pick() else {
            self.spawn(None);
            return;
        };
        let label = self.procs[i].label.clone();
        match self.rng.below(8) {
            0 if self.procs.len() > 1 => {
                self.note(format!("CRASH {label}"));
                self.remove(i);
            }
            0 | 1 => {
                let id = self.id_of(i);
                let keep = self.rng.chance(0.7);
                self.note(format!("RESTART {label} ({id:?}, same id: {keep})"));
                self.remove(i);
                self.spawn(if keep { id } else { None });
            }
            2 => {
                let d = self.rng.duration(self.sim.step, long);
                self.note(format!("PAUSE {label} for {d:?}"));
                self.procs[i].paused_until = Some(now + d);
            }
            3 => {
                let d = self.rng.duration(self.sim.step, long);
                let n = 1 + self.rng.index(3);
                let mut cut = vec![i];
                for _ in 1..n {
                    if let Some(j) = self.pick() {
                        if !cut.contains(&j) {
                            cut.push(j);
                        }
                    }
                }
                let labels: Vec<String> =
                    cut.iter().map(|j| self.procs[*j].label.clone()).collect();
                self.note(format!("PARTITION {labels:?} for {d:?}"));
                for j in cut {
                    self.procs[j].client.set_partitioned(true);
                    self.procs[j].partitioned_until = Some(now + d);
                }
            }
            4 => {
                let d = self.rng.duration(self.sim.step, long);
                self.note(format!("SLOW {label} for {d:?}"));
                self.procs[i].io.slow = Some(self.sim.max_latency);
                self.procs[i].slow_until = Some(now + d);
            }
            5 => {
                let d = self.rng.duration(self.sim.step, long);
                let rate = 0.1 + 0.4 * (self.rng.below(100) as f64 / 100.0);
                self.note(format!(
                    "FLAKY {label} for {d:?}, {:.0}% of operations fail",
                    rate * 100.0
                ));
                self.procs[i].flaky.lock().1 = rate;
                self.procs[i].flaky_until = Some(now + d);
            }
            6 => {
                if self.procs.len() < self.sim.workers + 2 {
                    self.note("JOIN a new process".into());
                    self.spawn(None);
                }
            }
            _ => self.mass_restart(),
        }
    }

    /// The partition source changes: one to three partitions added (new
    /// names) or removed, and every process leading is told, as a
    /// source's change notification would tell it.
    fn source_change(&mut self) {
        let n = 1 + self.rng.index(3);
        let list = &mut self.env.partitions;
        let change = if list.len() > n + 4 && self.rng.chance(0.5) {
            for _ in 0..n {
                let i = self.rng.index(list.len());
                list.remove(i);
            }
            format!("-{n}")
        } else {
            let serial = self.report.faults;
            list.extend((0..n).map(|k| crate::Partition::new(format!("s{serial}-{k}"))));
            format!("+{n}")
        };
        self.report.source_changes += 1;
        self.note(format!(
            "SOURCE {change}: {} partitions",
            self.env.partitions.len()
        ));
        // Told as a source's `changes()` notification tells the leader, or
        // by a user's `refresh_partitions` on any process.
        if self.rng.chance(0.5) || self.procs.is_empty() {
            for p in &mut self.procs {
                if let Some(leader) = p.running_mut().and_then(|r| r.leader.as_mut()) {
                    leader.push(crate::core::leader::LeaderInput::Refresh);
                }
            }
        } else {
            self.refresh_somewhere();
        }
        self.owned_dirty = true;
    }

    /// Most of the group crashes at once and comes back with the same IDs.
    fn mass_restart(&mut self) {
        let n = self.procs.len();
        let k = (n / 2 + 1 + self.rng.index(n / 2 + 1)).min(n);
        let mut ids = Vec::new();
        for _ in 0..k {
            let i = self.rng.index(self.procs.len());
            ids.push(self.id_of(i));
            self.remove(i);
        }
        self.note(format!("MASS RESTART of {k} processes"));
        for id in ids {
            self.spawn(id);
        }
    }

    /// Ends pauses, partitions, slowness and flakiness whose time is up.
    pub(crate) fn expire_faults(&mut self, now: Instant) {
        let mut notes = Vec::new();
        let mut calm_broken = false;
        for p in &mut self.procs {
            if p.paused_until.is_some_and(|t| t <= now) {
                p.paused_until = None;
                p.exempt = true;
                notes.push(format!("RESUME {}", p.label));
            }
            if p.partitioned_until.is_some_and(|t| t <= now) {
                p.partitioned_until = None;
                p.client.set_partitioned(false);
                notes.push(format!("HEAL {}", p.label));
            }
            if p.slow_until.is_some_and(|t| t <= now) {
                p.slow_until = None;
                p.io.slow = None;
                calm_broken = true;
            }
            if p.flaky_until.is_some_and(|t| t <= now) {
                p.flaky_until = None;
                p.flaky.lock().1 = 0.0;
                calm_broken = true;
            }
        }
        if calm_broken || !notes.is_empty() {
            self.disturb(now);
        }
        for n in notes {
            self.note(n);
        }
    }

    /// Stops every fault now; makes sure someone is alive to own the work.
    pub(crate) fn end_faults(&mut self, now: Instant) {
        for p in &mut self.procs {
            for t in [
                &mut p.paused_until,
                &mut p.partitioned_until,
                &mut p.slow_until,
                &mut p.flaky_until,
            ] {
                if t.is_some() {
                    *t = Some(now);
                }
            }
        }
        self.faults_over = true;
        self.end_operations(now);
        if self.procs.is_empty() {
            self.spawn(None);
        }
        self.note("faults stop".into());
        let _ = Duration::ZERO;
    }
}
