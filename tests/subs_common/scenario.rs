//! A group of worker processes under a steady flow, moved through phases
//! (scale-up, graceful stop, crash), and the figures of each phase.
#![allow(dead_code)]
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::child::{settled, unix_micros, WorkerProcess, WorkerSpec, STREAM};
use super::flow::{percentiles, Outcome};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Creates the work-queue stream the JetStream workers consume.
pub fn create_stream(url: &str) -> Res<()> {
    let nc = nats::connect(url)?;
    let body = serde_json::json!({
        "name": STREAM,
        "subjects": ["orders.>"],
        "retention": "workqueue",
        "storage": "memory",
        "num_replicas": 1,
    });
    let reply = nc.request_timeout(
        &format!("$JS.API.STREAM.CREATE.{STREAM}"),
        body.to_string(),
        Duration::from_secs(5),
    )?;
    let text = String::from_utf8_lossy(&reply.data).to_string();
    nc.close();
    if text.contains("\"error\"") {
        return Err(format!("stream create failed: {text}").into());
    }
    Ok(())
}

/// The worker processes of one group.
pub struct Group {
    pub spec: WorkerSpec,
    program: String,
    args: Vec<String>,
    pub workers: Vec<WorkerProcess>,
}

impl Group {
    /// Workers are `program args...` with the spec in their environment.
    pub fn new(spec: WorkerSpec, program: String, args: Vec<String>) -> Group {
        Group {
            spec,
            program,
            args,
            workers: Vec::new(),
        }
    }

    /// Starts one more worker; returns its index.
    pub fn spawn(&mut self) -> Res<usize> {
        let label = format!("w{}", self.workers.len());
        let w = WorkerProcess::spawn(&self.program, &self.args, &self.spec, &label)?;
        self.workers.push(w);
        Ok(self.workers.len() - 1)
    }

    fn live(&self) -> Vec<&WorkerProcess> {
        self.workers
            .iter()
            .filter(|w| w.killed_at.is_none() && !w.stopped)
            .collect()
    }

    /// Waits until every live worker started and every partition has
    /// exactly one live owner.
    pub fn wait_settled(&self, timeout: Duration) -> bool {
        let ids = self.spec.partition_ids();
        let deadline = Instant::now() + timeout;
        loop {
            let live = self.live();
            if live.iter().all(|w| w.started()) && settled(&live, &ids) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Like [`wait_settled`](Self::wait_settled), and every live worker
    /// owns a partition (a scale-up has been carried out).
    pub fn wait_balanced(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.wait_settled(left) && self.live().iter().all(|w| !w.owned().is_empty()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// After [`wait_balanced`](Self::wait_balanced): waits until the
    /// ownership stayed the same for `quiet` (a scale-up by several workers
    /// may take more than one rebalance).
    pub fn wait_still(&self, quiet: Duration, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut seen = self.owners();
        let mut since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.owners();
            if now != seen {
                seen = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return true;
            }
        }
        false
    }

    /// Who owned partition `p` when: (label, grant callback begin, release
    /// callback end or `None`).
    pub fn history(&self, p: &str) -> Vec<(String, u64, Option<u64>)> {
        let mut out = Vec::new();
        for w in &self.workers {
            let mut after = 0;
            while let Some((begin, _)) = w.callback_for(p, false, after) {
                let end = w.callback_for(p, true, begin).map(|(_, end)| end);
                out.push((w.label.clone(), begin, end));
                after = begin + 1;
            }
        }
        out.sort_by_key(|(_, begin, _)| *begin);
        out
    }

    /// Partition -> label of its live owner.
    pub fn owners(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for w in self.live() {
            for p in w.owned() {
                out.insert(p, w.label.clone());
            }
        }
        out
    }

    /// A live worker that is not the leader, with the most partitions.
    pub fn busiest_follower(&self) -> Option<usize> {
        (0..self.workers.len())
            .filter(|&i| {
                let w = &self.workers[i];
                w.killed_at.is_none() && !w.stopped && !w.is_leader()
            })
            .max_by_key(|&i| self.workers[i].owned().len())
    }

    /// Waits until `n` more messages were handled by the group (a bounded
    /// way to let the flow run).
    pub fn wait_handled(&self, n: usize, timeout: Duration) -> bool {
        let count = || {
            self.workers
                .iter()
                .map(|w| w.handled().len())
                .sum::<usize>()
        };
        let target = count() + n;
        let deadline = Instant::now() + timeout;
        while count() < target {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    pub fn all(&self) -> Vec<&WorkerProcess> {
        self.workers.iter().collect()
    }

    /// Labels of the killed workers.
    pub fn dead(&self) -> BTreeSet<String> {
        self.workers
            .iter()
            .filter(|w| w.killed_at.is_some())
            .map(|w| w.label.clone())
            .collect()
    }

    /// Longest release (or, with `granting`, grant) callback of any
    /// worker, in microseconds.
    pub fn longest_callback_us(&self, granting: bool) -> u64 {
        self.workers
            .iter()
            .map(|w| w.longest_callback_us(granting))
            .max()
            .unwrap_or(0)
    }

    /// When partition `p`'s first move at or after `after` ended: the end
    /// of the callback that granted it to its new owner.
    pub fn granted_by(&self, p: &str, after: u64) -> Option<u64> {
        self.workers
            .iter()
            .filter_map(|w| w.callback_for(p, false, after))
            .map(|(_, end)| end)
            .min()
    }

    /// When partition `p`'s first release at or after `after` began.
    pub fn released_from(&self, p: &str, after: u64) -> Option<u64> {
        self.workers
            .iter()
            .filter_map(|w| w.callback_for(p, true, after))
            .map(|(begin, _)| begin)
            .min()
    }

    /// Stops every live worker gracefully.
    pub fn stop_all(&mut self, timeout: Duration) {
        for w in self.workers.iter_mut() {
            if w.killed_at.is_none() && !w.stopped {
                w.stop(timeout);
            }
        }
    }
}

/// Partitions whose owner differs between two ownership maps.
pub fn moved(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    after
        .iter()
        .filter(|(p, w)| before.get(*p) != Some(*w))
        .map(|(p, _)| p.clone())
        .collect()
}

/// One phase of a scenario: messages handled (or, if never, published) in
/// `[from, to)` (unix micros), and the partitions that changed owner in it.
#[derive(Clone, Debug)]
pub struct Phase {
    pub name: String,
    pub from: u64,
    pub to: u64,
    pub moved: BTreeSet<String>,
}

impl Phase {
    pub fn start(name: &str) -> Phase {
        Phase {
            name: name.to_string(),
            from: unix_micros(),
            to: u64::MAX,
            moved: BTreeSet::new(),
        }
    }
}

/// The figures of one class of partitions (moved or unmoved) in a phase.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub published: usize,
    pub lost: usize,
    /// Handled again after a crash: received by the dead worker, unacked.
    pub dup_crash: usize,
    /// Handled again for any other reason (should be none).
    pub dup_other: usize,
    /// Delivery latency (publish to handler call), microseconds.
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// The figures of `phase` for its moved (`moved == true`) or unmoved
/// partitions.
pub fn row(outcome: &Outcome, phase: &Phase, moved: bool, dead: &BTreeSet<String>) -> Row {
    let fates: Vec<_> = outcome
        .select(phase.from, phase.to, &phase.moved, moved)
        .collect();
    let dups: Vec<_> = fates.iter().filter(|f| f.handled.len() > 1).collect();
    let dup_crash = dups
        .iter()
        .filter(|f| dead.contains(&f.handled[0].0))
        .count();
    let (p50, p99, max) = percentiles(fates.iter().filter_map(|f| f.latency_us()).collect());
    Row {
        published: fates.len(),
        lost: fates.iter().filter(|f| f.handled.is_empty()).count(),
        dup_crash,
        dup_other: dups.len() - dup_crash,
        p50,
        p99,
        max,
    }
}

/// A Markdown table of every phase's rows.
pub fn table(outcome: &Outcome, phases: &[Phase], dead: &BTreeSet<String>) -> String {
    let ms = |us: u64| format!("{:.1}", us as f64 / 1000.0);
    let mut out = String::from(
        "| phase | partitions | published | lost | dup (crash) | dup (other) | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for phase in phases {
        for moved in [true, false] {
            let r = row(outcome, phase, moved, dead);
            if r.published == 0 {
                continue;
            }
            let class = if moved {
                format!("moved ({})", phase.moved.len())
            } else {
                "unmoved".to_string()
            };
            out.push_str(&format!(
                "| {} | {class} | {} | {} | {} | {} | {} | {} | {} |\n",
                phase.name,
                r.published,
                r.lost,
                r.dup_crash,
                r.dup_other,
                ms(r.p50),
                ms(r.p99),
                ms(r.max)
            ));
        }
    }
    out
}
