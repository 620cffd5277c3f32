//! The blocking [`Manager`] handle and its builder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::core::heartbeat::HeartbeatInput;
use crate::core::leader::LeaderInput;
use crate::metrics::{Metrics, NoMetrics};
use crate::names::REFRESH_KEY;
use crate::names::{worker_number, BucketNames};
use crate::runtime::hooks::{self, Hooks};
use crate::runtime::metered::Metered;
use crate::runtime::shared::Shared;
use crate::runtime::start::{spawn_error, Launch, Start, Threads};
use crate::source::{PartitionSource, StaticSource};
use crate::store::{BucketConfig, KvBackend, KvStore};
use crate::strategy::AssignmentStrategy;
use crate::{Assignment, AssignmentChange, Config, Error, Health, Partition, State};

// The blocking `nats` client marks every item deprecated (in favour of its
// async successor, which this synchronous library cannot use).
#[allow(deprecated)]
enum Backend {
    Nats(nats::Connection),
    Custom(Arc<dyn KvBackend>),
}

/// Configures and starts a [`Manager`]. Made by [`Manager::builder`].
pub struct ManagerBuilder {
    backend: Backend,
    group: String,
    config: Config,
    source: Arc<dyn PartitionSource>,
    strategy: Option<Arc<dyn AssignmentStrategy>>,
    hooks: Hooks,
    preferred_id: Option<String>,
    metrics: Arc<dyn Metrics>,
    refresh_every: Option<Duration>,
    labels: BTreeMap<String, String>,
    capacity: u32,
}

impl ManagerBuilder {
    /// A builder over any [`KvBackend`] (e.g. the in-memory one in tests).
    pub fn with_backend(backend: Arc<dyn KvBackend>, group: impl Into<String>) -> Self {
        ManagerBuilder::new(Backend::Custom(backend), group.into())
    }

    fn new(backend: Backend, group: String) -> Self {
        ManagerBuilder {
            backend,
            group,
            config: Config::default(),
            source: Arc::new(StaticSource::default()),
            strategy: None,
            hooks: Hooks::default(),
            preferred_id: None,
            metrics: Arc::new(NoMetrics),
            refresh_every: None,
            labels: BTreeMap::new(),
            capacity: 1,
        }
    }

    /// Timing and sizing (validated by `start`).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Where the partitions come from (default: none).
    pub fn partitions(mut self, source: impl PartitionSource + 'static) -> Self {
        self.source = Arc::new(source);
        self
    }

    /// Where measurements go (default: [`NoMetrics`]). See
    /// [`Metrics`] for when each method is called.
    pub fn metrics(mut self, metrics: impl Metrics + 'static) -> Self {
        self.metrics = Arc::new(metrics);
        self
    }

    /// Makes the leader re-read the partition source every `period`, for
    /// sources that cannot signal changes themselves (e.g. an [`FnSource`]
    /// over a file or a database). Not needed for a
    /// [`KvSource`](crate::source::KvSource), which signals every change.
    /// Each re-read that finds a different list causes one
    /// `PartitionsChanged` rebalance; an unchanged list costs only the read.
    /// Default: never (re-read on leadership change and
    /// [`Manager::refresh_partitions`] only). A zero period is rejected by
    /// `start` ([`Error::InvalidConfig`]).
    ///
    /// [`FnSource`]: crate::source::FnSource
    pub fn refresh_every(mut self, period: Duration) -> Self {
        self.refresh_every = Some(period);
        self
    }

    /// How partitions are placed (default: the crate's default strategy).
    pub fn strategy(mut self, strategy: impl AssignmentStrategy + 'static) -> Self {
        self.strategy = Some(Arc::new(strategy));
        self
    }

    /// Asks for this worker ID (e.g. `worker-3` from a StatefulSet ordinal).
    /// Granted when free, or once its previous holder's heartbeat has stood
    /// still for a heartbeat TTL; otherwise the lowest free ID is taken.
    pub fn preferred_id(mut self, id: impl Into<String>) -> Self {
        self.preferred_id = Some(id.into());
        self
    }

    /// Called on the callback thread whenever this worker's partitions
    /// change. Stop working on `removed()` partitions before returning: the
    /// leader grants them to their next owner only after this returns.
    pub fn on_assignment_changed(
        mut self,
        f: impl Fn(&AssignmentChange) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.assignment_changed = Some(Box::new(f));
        self
    }

    /// Gives this worker placement label `key=value` (e.g. `zone=a`,
    /// `pool=vip`), carried in its heartbeat: partitions that
    /// [require](Partition::require_label) a label go only to workers
    /// carrying it, those that [prefer](Partition::prefer_label) one go to
    /// them as far as balance allows. A repeated key keeps the last value.
    /// Checked by `start`: at most 16 labels; keys and values of 1 to 63
    /// characters from `[A-Za-z0-9._-]`; otherwise [`Error::InvalidConfig`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let nc = parti::store::nats::connect("127.0.0.1:4222")?;
    /// let manager = parti::Manager::builder(nc, "orders")
    ///     .label("zone", "a")
    ///     .capacity(2)
    ///     .on_prepare(|ps| println!("warming {} partitions", ps.len()))
    ///     .start()?;
    /// # Ok(()) }
    /// ```
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// This worker's capacity, a relative weight (default 1): a worker of
    /// capacity 2 is given twice the load of one of capacity 1 (by the
    /// default strategy, [`BoundedLoad`](crate::strategy::BoundedLoad)).
    /// Checked by `start`: 1 to 10,000, otherwise [`Error::InvalidConfig`].
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }

    /// Called on the callback thread with the partitions that are on their
    /// way to this worker while their previous owner still holds them (the
    /// first step of a planned move, revoke before grant), so that a
    /// stateful service can warm its cache before `on_assignment_changed`
    /// grants them. It never delays a move: the leader does not wait for
    /// it, and news older than `Config::handoff_timeout` is dropped
    /// instead of delivered. Not called for emergencies (a dead owner's
    /// partitions are granted at once), nor for partitions nobody held.
    /// Keep it short: it runs before the callbacks queued after it, and a
    /// panic is caught and reported through `on_error`.
    pub fn on_prepare(mut self, f: impl Fn(&[Partition]) + Send + Sync + 'static) -> Self {
        self.hooks.prepare = Some(Box::new(f));
        self
    }

    /// Called on every state transition.
    pub fn on_state_changed(mut self, f: impl Fn(State, State) + Send + Sync + 'static) -> Self {
        self.hooks.state_changed = Some(Box::new(f));
        self
    }

    /// Called when this worker becomes (`true`) or stops being the leader.
    pub fn on_leadership_changed(mut self, f: impl Fn(bool) + Send + Sync + 'static) -> Self {
        self.hooks.leadership_changed = Some(Box::new(f));
        self
    }

    /// Called for every error the manager works around (corrupt values, KV
    /// failures, panicking callbacks, outages).
    pub fn on_error(mut self, f: impl Fn(&Error) + Send + Sync + 'static) -> Self {
        self.hooks.error = Some(Box::new(f));
        self
    }

    fn validate(&self) -> Result<BucketNames, Error> {
        self.config.validate()?;
        if self.refresh_every.is_some_and(|p| p.is_zero()) {
            return Err(Error::InvalidConfig {
                field: "refresh_every",
                reason: "must be longer than zero".into(),
            });
        }
        let names = BucketNames::for_group(&self.group)?;
        crate::strategy::check_descriptor(&self.labels, self.capacity)?;
        if let Some(id) = &self.preferred_id {
            let ok = worker_number(&self.config.worker_id_prefix, id)
                .is_some_and(|n| n < self.config.max_workers);
            if !ok {
                return Err(Error::InvalidName {
                    name: id.clone(),
                    reason: format!(
                        "preferred id must be {}-<n> with n below max_workers ({})",
                        self.config.worker_id_prefix, self.config.max_workers
                    ),
                });
            }
        }
        Ok(names)
    }

    /// Joins the group: claims an ID, takes part in the election, and blocks
    /// until this worker holds its first assignment (which can be empty).
    ///
    /// # Errors
    /// - [`Error::InvalidConfig`] / [`Error::InvalidName`]: rejected before
    ///   anything is written to NATS.
    /// - [`Error::Kv`]: NATS unreachable or a bucket with a conflicting
    ///   configuration.
    /// - [`Error::NoFreeWorkerId`]: the group is full.
    /// - [`Error::StartupTimeout`]: no assignment within
    ///   `startup_timeout + cold_start_window`; everything started is stopped.
    pub fn start(self) -> Result<Manager, Error> {
        let (manager, started, deadline) = self.launch(false)?;
        let (state, ok) = manager
            .shared
            .wait_until(deadline, |s| s.is_assigned() || s == State::Shutdown);
        if !ok || state == State::Shutdown {
            let _ = manager.stop();
            return Err(manager
                .shared
                .take_start_failure()
                .unwrap_or(Error::StartupTimeout {
                    after: started.elapsed(),
                    state,
                }));
        }
        Ok(manager)
    }

    /// Like [`start`](Self::start), but returns once the buckets are open,
    /// without waiting for anything else: the manager is then in
    /// `ClaimingId` (its [`worker_id`](Manager::worker_id) is empty until the
    /// claim ends, which can take a heartbeat TTL when the preferred ID's
    /// previous holder has to go quiet first), then `Election` or
    /// `WaitingAssignment`. Use it when the caller must stay able to
    /// `stop()` at any moment of a long start (e.g. on SIGTERM); follow with
    /// [`Manager::wait_for_state`].
    ///
    /// # Errors
    /// As `start`, except that a claim that fails ([`Error::NoFreeWorkerId`],
    /// [`Error::Kv`]) is reported through `on_error` and the manager goes to
    /// `Shutdown`, and there is no [`Error::StartupTimeout`].
    pub fn spawn(self) -> Result<Manager, Error> {
        self.launch(true).map(|(manager, _, _)| manager)
    }

    /// Opens the buckets, starts the callback thread and the start thread
    /// (which claims an ID, then starts the rest: [`Start`]); returns the
    /// manager, when it started and the deadline for its first assignment.
    /// Each step that fails stops what the steps before it started (the
    /// [`Launch`] guard).
    fn launch(self, report_failure: bool) -> Result<(Manager, Instant, Instant), Error> {
        let names = self.validate()?;
        // Fields left at their default follow the ones set (see `resolved`).
        let config = self.config.resolved()?;
        let backend: Arc<dyn KvBackend> = match self.backend {
            Backend::Nats(nc) => Arc::new(crate::store::nats::NatsBackend::new(
                nc,
                config.operation_timeout,
            )),
            Backend::Custom(b) => b,
        };
        let bucket = |name: &str, max_age: Option<Duration>| {
            let mut c = BucketConfig::new(name, max_age);
            c.replicas = config.replicas;
            backend.open(&c)
        };
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let beats = crossbeam_channel::unbounded::<HeartbeatInput>();
        let shared = Arc::new(Shared::new(jobs_tx, self.metrics));
        let workers = Metered::wrap(bucket(&names.workers, Some(config.worker_id_ttl))?, &shared);
        let leader_store =
            Metered::wrap(bucket(&names.leader, Some(config.election_ttl))?, &shared);
        let assignments = Metered::wrap(bucket(&names.assignments, None)?, &shared);
        let applied = beats.0.clone();
        let callbacks = hooks::spawn(
            format!("parti-callbacks-{}", self.group),
            self.hooks,
            jobs_rx,
            move |v| {
                let _ = applied.send(HeartbeatInput::Applied(v));
            },
        )
        .map_err(spawn_error)?;
        let mut launch = Launch(Some(Threads {
            shared: shared.clone(),
            backend,
            config: config.clone(),
            callbacks,
            start: None,
        }));
        let started = Instant::now();
        let startup_deadline = started + config.startup_timeout + config.cold_start_window;
        shared.set_startup(Some(State::ClaimingId));
        let leader_inputs = crossbeam_channel::unbounded();
        let refresh = leader_inputs.0.clone();
        let start = Start {
            shared: shared.clone(),
            config: config.clone(),
            group: self.group.clone(),
            names,
            workers: workers.clone(),
            leader_store,
            assignments,
            preferred_id: self.preferred_id,
            instance: new_instance_id(),
            labels: self.labels,
            capacity: self.capacity,
            source: self.source,
            strategy: self
                .strategy
                .unwrap_or_else(|| Arc::new(crate::strategy::default_strategy())),
            refresh_every: self.refresh_every,
            beats,
            leader_inputs,
            deadline: startup_deadline,
            report_failure,
        }
        .spawn()
        .map_err(spawn_error)?;
        if let Some(t) = &mut launch.0 {
            t.start = Some(start);
        }
        let manager = Manager {
            shared,
            config,
            group: self.group,
            workers,
            refresh,
            threads: Mutex::new(launch.0.take()),
        };
        Ok((manager, started, startup_deadline))
    }
}

/// A process-unique, practically random nonce: tells this process from any
/// other that ever held the same worker ID.
fn new_instance_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let local = 0u8;
    let seed = format!(
        "{nanos}-{}-{}-{:p}-{:?}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        &local,
        std::thread::current().id()
    );
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
}

/// A member of a group of workers sharing partitions.
///
/// `Manager` is `Send + Sync`: share it with `Arc<Manager>`. Every method is
/// cheap except [`stop`](Manager::stop) and
/// [`wait_for_state`](Manager::wait_for_state), which block for bounded times.
///
/// ```no_run
/// use parti::{Config, Manager, Partition};
/// use parti::source::StaticSource;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let nc = parti::store::nats::connect("127.0.0.1:4222")?;
/// let manager = Manager::builder(nc, "orders")
///     .partitions(StaticSource::new((0..64).map(|i| Partition::new(format!("orders.{i}")))))
///     .on_assignment_changed(|c| println!("+{:?} -{:?}", c.added(), c.removed()))
///     .start()?;
/// for p in manager.assignment().partitions() {
///     println!("{} owns {}", manager.worker_id(), p.id());
/// }
/// manager.stop()?;
/// # Ok(()) }
/// ```
pub struct Manager {
    shared: Arc<Shared>,
    config: Config,
    group: String,
    workers: Arc<dyn KvStore>,
    /// The leader terms' inputs, for a refresh request.
    refresh: Sender<LeaderInput>,
    threads: Mutex<Option<Threads>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("group", &self.group)
            .field("worker_id", &self.worker_id())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// A builder for a member of `group` over a NATS connection. The group
    /// name (validated by `start`) names the KV buckets. Prefer a connection
    /// made with [`store::nats::connect`](crate::store::nats::connect): it
    /// reconnects forever instead of giving up after 60 attempts.
    ///
    /// The manager owns the connection and closes it when it stops, so give
    /// it a connection of its own (not a clone of one you keep using).
    #[allow(deprecated)]
    pub fn builder(nc: nats::Connection, group: impl Into<String>) -> ManagerBuilder {
        ManagerBuilder::new(Backend::Nats(nc), group.into())
    }

    /// This worker's stable ID, e.g. `worker-3`; empty while a manager
    /// made by [`spawn`](ManagerBuilder::spawn) is still claiming it.
    pub fn worker_id(&self) -> &str {
        self.shared.worker_id()
    }

    /// The group name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Whether this worker currently leads the group.
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// This worker's partitions now: a cheap snapshot.
    pub fn assignment(&self) -> Assignment {
        self.shared.assignment()
    }

    /// What a readiness or liveness probe needs: see [`Health`].
    ///
    /// ```no_run
    /// # fn probe(manager: &parti::Manager) {
    /// let health = manager.health();
    /// if !health.is_heartbeat_confirmed() {
    ///     eprintln!("heartbeat not confirmed for {:?}", health.since_last_heartbeat);
    /// }
    /// # }
    /// ```
    pub fn health(&self) -> Health {
        let probes = self.shared.probes();
        let assignment = self.shared.assignment();
        Health {
            state: self.shared.state(),
            is_leader: self.shared.is_leader(),
            worker_id: self.worker_id().to_string(),
            since_last_heartbeat: probes.last_heartbeat.map(|t| t.elapsed()),
            heartbeat_ttl: self.config.heartbeat_ttl,
            assignment_version: assignment.version(),
            partitions: assignment.len(),
            degraded_since: probes.degraded_since.map(|t| t.elapsed()),
            since_progress: probes.last_progress.elapsed(),
            stall_after: self.config.stall_after(),
            store_fault: probes
                .store_fault
                .map(|(at, bucket)| (at.elapsed(), bucket)),
        }
    }

    /// Blocks until the manager is in `state`, or `timeout` passes
    /// ([`Error::WaitTimeout`]).
    pub fn wait_for_state(&self, state: State, timeout: Duration) -> Result<(), Error> {
        let (current, ok) = self
            .shared
            .wait_until(Instant::now() + timeout, |s| s == state);
        if ok {
            Ok(())
        } else {
            Err(Error::WaitTimeout {
                wanted: state,
                after: timeout,
                current,
            })
        }
    }

    /// Asks the leader to re-read the partition source; it rebalances if the
    /// list changed. Works from any worker: the request is written to the
    /// group (the `_refresh` key, which every leader watches), and a worker
    /// that leads is also told at once — the write still matters then, in
    /// case another worker has taken over meanwhile.
    ///
    /// # Errors
    /// [`Error::Stopped`] after `stop`; [`Error::Kv`] when the request could
    /// not be written (a worker that leads re-reads its source anyway).
    pub fn refresh_partitions(&self) -> Result<(), Error> {
        if self.threads.lock().is_none() {
            return Err(Error::Stopped);
        }
        if self.is_leader() {
            let _ = self.refresh.send(LeaderInput::Refresh);
        }
        self.workers
            .put(REFRESH_KEY, new_instance_id().as_bytes())
            .map(|_| ())
            .map_err(Error::from)
    }

    /// Leaves the group gracefully: announces the departure, waits until the
    /// leader has moved this worker's partitions away (they are released
    /// through `on_assignment_changed` first), then stops every thread.
    /// Returns within `Config::shutdown_timeout`, even while NATS is
    /// unreachable (then partitions are released locally). Idempotent.
    pub fn stop(&self) -> Result<(), Error> {
        let Some(threads) = self.threads.lock().take() else {
            return Ok(());
        };
        let clean = threads.stop();
        log::info!("[{}] stopped", self.worker_id());
        if clean {
            Ok(())
        } else {
            Err(Error::ShutdownTimeout {
                after: self.config.shutdown_timeout,
            })
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
