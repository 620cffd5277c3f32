//! The simulated world: processes over one shared store, the virtual clock,
//! the step loop and the invariant checks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::clock::{Clock, ManualClock};
use crate::names::BucketNames;
use crate::store::memory::{Fault, KvOp, MemoryBackend};
use crate::store::{BucketConfig, KvBackend, KvError};
use crate::wire::WorkerRecord;

use super::drive::Stepper;
use super::node::{Notes, Running};
use super::ops::{Io, Office, Stores, Thread};
use super::rng::Rng;
use super::store_faults::Recovery;
use super::tokens::Tokens;
use super::view::ViewObserver;
use super::{Env, SimConfig, SimFailure, SimReport};
use crate::core::claim::{ClaimEffect, ClaimNode};

const TRACE_LINES: usize = 60;

pub(crate) enum Life {
    /// Claiming its ID with the runtime's node; a failed claim is tried
    /// again from the start, not before the instant given.
    Claiming(Box<ClaimNode>, Instant),
    Running(Box<Running>),
}

/// One simulated process.
pub(crate) struct Process {
    pub label: String,
    pub preferred: Option<String>,
    pub client: MemoryBackend,
    pub io: Io,
    pub rng: Rng,
    pub instance: String,
    pub life: Life,
    /// Failure probability of each store operation (0: healthy).
    pub flaky: Arc<Mutex<(Rng, f64)>>,
    pub paused_until: Option<Instant>,
    pub partitioned_until: Option<Instant>,
    pub slow_until: Option<Instant>,
    pub flaky_until: Option<Instant>,
    /// Resumed from a pause, until its queued callbacks return.
    pub exempt: bool,
    /// Keeping its partitions through an outage, and after it until then
    /// (see `sim::keep`).
    pub keeping: bool,
    pub kept_until: Option<Instant>,
}

impl Process {
    pub fn running(&self) -> Option<&Running> {
        match &self.life {
            Life::Running(r) => Some(r),
            Life::Claiming(..) => None,
        }
    }

    pub fn running_mut(&mut self) -> Option<&mut Running> {
        match &mut self.life {
            Life::Running(r) => Some(r),
            Life::Claiming(..) => None,
        }
    }

    /// Counted in the ownership checks.
    pub fn counted(&self) -> Option<&Running> {
        if self.paused_until.is_some() || self.exempt || self.keeping || self.kept_until.is_some() {
            return None;
        }
        self.running()
    }
}

pub(crate) struct World<'a> {
    pub seed: u64,
    pub sim: &'a SimConfig,
    pub env: Env,
    pub clock: ManualClock,
    pub t0: Instant,
    pub backend: MemoryBackend,
    pub names: BucketNames,
    pub rng: Rng,
    pub procs: Vec<Process>,
    pub spawned: u64,
    pub trace: VecDeque<String>,
    pub report: SimReport,
    pub(crate) owned_dirty: bool,
    /// Every partition had exactly one owner at the last full check.
    pub converged: bool,
    /// Leader terms, shared with every process's stores.
    pub office: Arc<Office>,
    /// A reader of the assignments bucket (invariant 5).
    pub observer: Option<ViewObserver>,
    /// The fenced downstream's memory (invariant 6).
    tokens: Tokens,
    /// The last store fault, until the group recovered from it.
    pub recovery: Option<Recovery>,
    /// Errors the nodes reported, newest last (a few).
    pub reports: VecDeque<String>,
    /// Lease holders when the store forgot the lease, and until when they
    /// may believe it (invariant 1 does not count them until then).
    pub stale_leases: Vec<(String, Instant)>,
    /// When the join that follows a store fault is due.
    pub join_at: Option<Instant>,
    /// When the workers bucket last forgot.
    pub workers_forgot_at: Option<Instant>,
    /// Disturbing faults injected or ended so far: a promise with a tight
    /// bound (leave, drain) is checked only if none came after it.
    pub disturbances: u64,
    pub disturbed_at: Option<Instant>,
    /// Leaves, drains and corrupt values whose promises are awaited.
    pub leaves: Vec<super::leave::LeaveWatch>,
    pub drains: Vec<super::control::DrainWatch>,
    pub corrupt: Vec<super::corrupt::CorruptWatch>,
    /// Worker IDs the operator drained.
    pub drained: std::collections::BTreeSet<String>,
    /// A `refresh_partitions` call failed: it is tried again.
    pub refresh_pending: bool,
    /// Drained workers to undrain once the group settles after the faults.
    pub undrain_later: Vec<String>,
    /// The faults stopped; the actions after them (see `sim::control`) ran.
    pub faults_over: bool,
    pub tail_done: bool,
}

impl<'a> World<'a> {
    pub fn new(seed: u64, sim: &'a SimConfig, env: Env, clock: ManualClock) -> Self {
        let backend = MemoryBackend::new(Arc::new(clock.clone()));
        let t0 = clock.now();
        let mut world = World {
            seed,
            sim,
            env,
            clock,
            t0,
            backend,
            names: BucketNames {
                workers: "parti-sim-workers".into(),
                leader: "parti-sim-leader".into(),
                assignments: "parti-sim-assignments".into(),
            },
            rng: Rng::new(seed),
            procs: Vec::new(),
            spawned: 0,
            trace: VecDeque::new(),
            report: SimReport {
                seed,
                ..SimReport::default()
            },
            owned_dirty: true,
            converged: false,
            office: Arc::new(Office::default()),
            observer: None,
            tokens: Tokens::default(),
            recovery: None,
            reports: VecDeque::new(),
            stale_leases: Vec::new(),
            join_at: None,
            workers_forgot_at: None,
            disturbances: 0,
            disturbed_at: None,
            leaves: Vec::new(),
            drains: Vec::new(),
            corrupt: Vec::new(),
            drained: Default::default(),
            refresh_pending: false,
            undrain_later: Vec::new(),
            faults_over: false,
            tail_done: false,
        };
        // A client of its own, never faulty: a reader of the bucket, like a
        // dashboard or `parti status`.
        let name = world.names.assignments.clone();
        let reader = world.backend.client();
        world.observer = reader
            .open(&BucketConfig::new(&name, None))
            .ok()
            .map(ViewObserver::new);
        for _ in 0..sim.workers {
            world.spawn(None);
        }
        world
    }

    pub fn elapsed(&self) -> Duration {
        self.clock.now() - self.t0
    }

    pub fn note(&mut self, line: String) {
        let at = self.elapsed();
        if self.trace.len() == TRACE_LINES {
            self.trace.pop_front();
        }
        self.trace
            .push_back(format!("{:>8.3}s {line}", at.as_secs_f64()));
    }

    pub(crate) fn fail(&self, message: String) -> SimFailure {
        SimFailure {
            seed: self.seed,
            preset: self.sim.preset,
            at: self.elapsed(),
            message,
            // The errors reported last (what `on_error` got) follow the trace.
            trace: (self.trace.iter().cloned())
                .chain(
                    self.reports
                        .iter()
                        .rev()
                        .take(12)
                        .rev()
                        .map(|r| format!("reported: {r}")),
                )
                .collect(),
        }
    }

    /// Starts a new process, asking for `preferred` as its ID.
    pub fn spawn(&mut self, preferred: Option<String>) {
        self.spawned += 1;
        let label = format!("proc{}", self.spawned);
        let client = self.backend.client();
        let c = &self.env.config;
        let open = |name: &str, age: Option<Duration>| client.open(&BucketConfig::new(name, age));
        let stores = match (
            open(&self.names.workers, Some(c.worker_id_ttl)),
            open(&self.names.leader, Some(c.election_ttl)),
            open(&self.names.assignments, None),
        ) {
            (Ok(workers), Ok(leader), Ok(assignments)) => Stores {
                workers,
                leader,
                assignments,
                office: self.office.clone(),
            },
            // A fresh client on a healthy in-process store cannot fail to
            // open; if it ever does, the process simply never starts.
            _ => return,
        };
        let flaky = Arc::new(Mutex::new((self.rng.fork(), 0.0)));
        let hook_state = flaky.clone();
        client.set_fault_hook(Some(Arc::new(move |op, _bucket: &str, _key: &str| {
            let mut state = hook_state.lock();
            let (rng, p) = &mut *state;
            if *p <= 0.0 || !rng.chance(*p) {
                return None;
            }
            let e = KvError::Timeout {
                op: "simulated",
                after: Duration::from_secs(1),
            };
            let write = matches!(op, KvOp::Create | KvOp::Update | KvOp::Put | KvOp::Delete);
            Some(if write && rng.chance(0.5) {
                Fault::FailAfterApply(e)
            } else {
                Fault::Fail(e)
            })
        })));
        let instance = format!("{:016x}", self.rng.next_u64());
        let now = self.clock.now();
        let claim = Box::new(claim_node(&self.env, preferred.as_deref(), &instance));
        let mut io = Io::new(stores, self.rng.fork());
        io.lag = self.sim.delivery_lag;
        io.timeout = self.env.config.operation_timeout;
        self.procs.push(Process {
            label: label.clone(),
            preferred: preferred.clone(),
            client,
            io,
            rng: self.rng.fork(),
            instance,
            life: Life::Claiming(claim, now),
            flaky,
            paused_until: None,
            partitioned_until: None,
            slow_until: None,
            flaky_until: None,
            exempt: false,
            keeping: false,
            kept_until: None,
        });
        self.note(format!("{label} starts (preferred id {preferred:?})"));
    }

    /// Removes a process at once: a crash, or its own exit.
    pub fn remove(&mut self, index: usize) {
        let p = self.procs.remove(index);
        // Its watches and in-flight operations vanish with it.
        drop(p);
        self.owned_dirty = true;
    }

    fn step_process(&mut self, index: usize, now: Instant) -> Result<(), SimFailure> {
        let env = &self.env;
        let p = &mut self.procs[index];
        // Bytes on the wire arrive whether or not their sender is frozen.
        p.io.deliver(now);
        if p.paused_until.is_some() {
            return Ok(());
        }
        let mut notes = Notes::default();
        match &mut p.life {
            Life::Claiming(node, not_before) => {
                let mut ended = None;
                if now >= *not_before {
                    // The claim has no watch: its stepper holds nothing.
                    Stepper::new(Thread::Beat, None, Duration::ZERO, now).step(
                        node.as_mut(),
                        &mut p.io,
                        now,
                        &mut |_, effect| ended = Some(effect),
                    );
                }
                match ended {
                    Some(ClaimEffect::Claimed { id, revision, .. }) => {
                        notes.trace.push(format!("{} claimed {id}", p.label));
                        p.life = Life::Running(Box::new(Running::new(
                            env,
                            id,
                            &p.instance,
                            revision,
                            now,
                        )));
                    }
                    Some(ClaimEffect::Failed(_)) => {
                        p.life = Life::Claiming(
                            Box::new(claim_node(env, p.preferred.as_deref(), &p.instance)),
                            now + env.config.heartbeat_interval / 2,
                        );
                    }
                    None => {}
                }
            }
            Life::Running(r) => {
                let started = std::time::Instant::now();
                r.step(env, &mut p.io, &mut p.rng, now, &mut notes);
                if r.leader.is_some() {
                    self.report.leader_wall += started.elapsed();
                }
            }
        }
        let p = &mut self.procs[index];
        self.report.stale_puts += std::mem::take(&mut p.io.stale_puts);
        let overwrites = self
            .office
            .overwritten
            .load(std::sync::atomic::Ordering::SeqCst);
        if overwrites > self.report.late_overwrites {
            notes.violations.push(format!(
                "a deposed leader's write landed over a newer leader's (sent by {})",
                p.instance
            ));
        }
        self.report.late_overwrites = overwrites;
        if p.exempt && p.running().is_some_and(|r| !r.busy()) {
            p.exempt = false;
            notes.owned_changed = true;
        }
        notes.owned_changed |= self.keep_mode(index, now, &notes.degraded);
        self.owned_dirty |= notes.owned_changed;
        let label = self.procs[index].label.clone();
        // A worker keeping its partitions through an outage may install a
        // grant that moved on meanwhile: the fenced downstream rejects it
        // (what `keep_assignment_on_outage` documents), nothing to check.
        let keeping = self.procs[index].keeping || self.procs[index].kept_until.is_some();
        for a in notes.installs.iter().filter(|_| !keeping) {
            if let Err(e) = self.tokens.install(&label, a) {
                notes.violations.push(e);
            }
        }
        for r in notes.reports {
            self.report.reports += 1;
            self.corrupt_reported(&r);
            if self.reports.len() == TRACE_LINES {
                self.reports.pop_front();
            }
            self.reports.push_back(format!("{label}: {r}"));
        }
        for line in notes.trace {
            if line.contains(" leads, epoch") {
                self.report.terms += 1;
            }
            self.note(line);
        }
        if let Some(v) = notes.violations.into_iter().next() {
            return Err(self.fail(v));
        }
        Ok(())
    }

    /// Invariants 1, 2 and 5; updates `converged`.
    fn check(&mut self, now: Instant) -> Result<(), SimFailure> {
        let procs = &self.procs;
        // A stale record nobody will act on (see `view`): its process holds
        // a later version, has fenced itself since (a new incarnation), or
        // is not running.
        let harmless = |worker: &str, instance: &str, incarnation: u32, version: u64| {
            !procs.iter().any(|p| {
                p.instance == instance
                    && p.running().is_some_and(|r| {
                        r.id == worker
                            && r.worker.incarnation() == incarnation
                            && r.worker.current_version() <= version
                    })
            })
        };
        let view = match &mut self.observer {
            Some(o) => o.check(&harmless),
            None => Err("the observer of the assignments bucket could not watch it".into()),
        };
        if let Err(e) = view {
            return Err(self.fail(e));
        }
        let holders: Vec<&str> = self
            .procs
            .iter()
            .filter(|p| {
                p.running()
                    .is_some_and(|r| r.lease.valid_until().is_some_and(|t| t > now))
            })
            .filter(|p| {
                !self
                    .stale_leases
                    .iter()
                    .any(|(label, until)| *label == p.label && now < *until)
            })
            .map(|p| p.label.as_str())
            .collect();
        if holders.len() > 1 {
            return Err(self.fail(format!(
                "{} processes hold an unexpired lease: {holders:?}",
                holders.len()
            )));
        }
        if !self.owned_dirty {
            return Ok(());
        }
        self.owned_dirty = false;
        let mut owner: HashMap<&str, usize> = HashMap::with_capacity(self.env.partitions.len());
        let mut clash = None;
        for (i, p) in self.procs.iter().enumerate() {
            let Some(r) = p.counted() else { continue };
            for id in r.owned() {
                match owner.insert(id.as_str(), i) {
                    Some(j) if j != i => {
                        clash = Some(format!(
                            "partition {id} owned by {} ({}) and {} ({})",
                            p.label,
                            r.id,
                            self.procs[j].label,
                            self.procs[j].running().map_or("?", |r| r.id.as_str())
                        ));
                    }
                    _ => {}
                }
            }
        }
        if let Some(c) = clash {
            return Err(self.fail(c));
        }
        // Every partition of the source owned, and none it no longer lists
        // (a removed partition must be released).
        let all_owned = owner.len() == self.env.partitions.len()
            && self
                .env
                .partitions
                .iter()
                .all(|p| owner.contains_key(p.id()));
        let settled = self
            .procs
            .iter()
            .all(|p| p.counted().is_some_and(|r| !r.busy()));
        self.converged = all_owned && settled;
        // Not converged yet: look again next step.
        self.owned_dirty = !self.converged;
        Ok(())
    }

    /// The step loop.
    pub fn run(mut self) -> Result<SimReport, SimFailure> {
        let end_faults = self.sim.fault_time;
        let end = end_faults + self.sim.bound();
        let mut faults_over = false;
        let mut converged_at: Option<Duration> = None;
        loop {
            let now = self.clock.now();
            let elapsed = now - self.t0;
            if elapsed < end_faults {
                self.maybe_inject(now);
            } else if !faults_over {
                faults_over = true;
                self.end_faults(now);
            }
            self.expire_faults(now);
            self.due_join(now);
            let mut order: Vec<usize> = (0..self.procs.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, self.rng.index(i + 1));
            }
            for i in order {
                self.step_process(i, now)?;
            }
            while let Some(i) = self
                .procs
                .iter()
                .position(|p| p.running().is_some_and(|r| r.quit))
            {
                self.remove(i);
            }
            self.report.steps += 1;
            self.check(now)?;
            if let Err(e) = self.check_recovery(now) {
                return Err(self.fail(e));
            }
            if let Err(e) = self.check_operations(now) {
                return Err(self.fail(e));
            }
            if faults_over {
                match (self.converged, converged_at) {
                    (true, None) => converged_at = Some(elapsed.saturating_sub(end_faults)),
                    (false, Some(_)) => converged_at = None,
                    _ => {}
                }
            }
            let lingered = match (self.sim.linger, converged_at) {
                (Some(linger), Some(at)) => elapsed >= end_faults + at + linger,
                _ => false,
            };
            if elapsed >= end || lingered {
                break;
            }
            self.clock.advance(self.sim.step);
        }
        match converged_at {
            Some(after) => {
                self.report.converged_after = after;
                self.report.alive = self.procs.len();
                Ok(self.report)
            }
            None => {
                let unowned = self.describe_unowned();
                Err(self.fail(format!(
                    "not every partition has exactly one owner {:?} after the faults stopped: {unowned}",
                    self.sim.bound()
                )))
            }
        }
    }

    pub fn describe_unowned(&self) -> String {
        let mut parts = Vec::new();
        for p in &self.procs {
            match &p.life {
                Life::Claiming(c, _) => parts.push(format!("{} claiming {c:?}", p.label)),
                Life::Running(r) => parts.push(format!(
                    "{} {} owns {} (busy {}, leader {}, applied v{})",
                    p.label,
                    r.id,
                    r.owned().count(),
                    r.busy(),
                    r.leader
                        .as_ref()
                        .map_or("no".to_string(), |l| format!("{:?}", l.phase())),
                    r.worker.applied_version()
                )),
            }
        }
        parts.join("; ")
    }
}

/// A claim as a starting manager makes it (no start-up deadline: a
/// simulated process waits as long as it takes).
fn claim_node(env: &Env, preferred: Option<&str>, instance: &str) -> ClaimNode {
    let record = WorkerRecord::starting(instance, String::new(), 0);
    ClaimNode::new(&env.config, preferred, &record, None)
}
