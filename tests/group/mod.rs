//! Helpers for tests of whole groups on a real nats-server: workers in child
//! processes (the `parti worker` binary, killable with SIGKILL), in-process
//! managers with short windows, and an observer of the group's buckets.
#![allow(dead_code)] // each test crate uses a different part of this module

pub mod ledger;
pub mod store_faults;
pub mod tokens;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parti::source::StaticSource;
use parti::store::nats::NatsBackend;
use parti::store::{BucketConfig, KvBackend, KvStore, WatchEvent};
use parti::wire::{AssignmentRecord, MetaRecord};
use parti::{Config, Manager, Partition, RebalanceKind, State};

/// Windows short enough for tests, long enough for a loaded 2-core machine.
pub fn fast_config() -> Config {
    Config {
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_ttl: Duration::from_millis(800),
        worker_id_ttl: Duration::from_secs(3),
        election_ttl: Duration::from_millis(1200),
        cold_start_window: Duration::from_millis(1500),
        planned_scale_window: Duration::from_millis(1000),
        emergency_grace: Duration::from_millis(300),
        rebalance_cooldown: Duration::from_millis(300),
        startup_timeout: Duration::from_secs(10),
        shutdown_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_millis(300),
        handoff_timeout: Duration::from_secs(3),
        ..Config::default()
    }
}

/// `--set` flags that give a child worker `config`'s timings.
pub fn config_flags(config: &Config) -> Vec<String> {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    [
        ("heartbeat_interval", config.heartbeat_interval),
        ("heartbeat_ttl", config.heartbeat_ttl),
        ("worker_id_ttl", config.worker_id_ttl),
        ("election_ttl", config.election_ttl),
        ("cold_start_window", config.cold_start_window),
        ("planned_scale_window", config.planned_scale_window),
        ("emergency_grace", config.emergency_grace),
        ("rebalance_cooldown", config.rebalance_cooldown),
        ("startup_timeout", config.startup_timeout),
        ("shutdown_timeout", config.shutdown_timeout),
        ("operation_timeout", config.operation_timeout),
        ("handoff_timeout", config.handoff_timeout),
    ]
    .iter()
    .flat_map(|(f, d)| ["--set".to_string(), format!("{f}={}", ms(*d))])
    .collect()
}

pub fn partitions(n: usize) -> Vec<Partition> {
    (0..n).map(|i| Partition::new(format!("p{i}"))).collect()
}

/// Records the states an in-process manager went through.
#[derive(Clone, Default)]
pub struct StateLog(pub Arc<Mutex<Vec<State>>>);

impl StateLog {
    pub fn states(&self) -> Vec<State> {
        self.0.lock().unwrap().clone()
    }
    pub fn saw(&self, s: State) -> bool {
        self.0.lock().unwrap().contains(&s)
    }
}

/// Starts an in-process manager on `url`.
pub fn start_manager(url: &str, group: &str, n: usize, config: &Config) -> (Manager, StateLog) {
    let log = StateLog::default();
    log.0.lock().unwrap().push(State::Init);
    let l = log.clone();
    let nc = parti::store::nats::connect(url).expect("connect");
    let m = Manager::builder(nc, group)
        .config(config.clone())
        .partitions(StaticSource::new(partitions(n)))
        .on_state_changed(move |_, to| l.0.lock().unwrap().push(to))
        .start()
        .expect("manager start");
    (m, log)
}

/// An in-process manager whose assignment callbacks are recorded in the same
/// shape as a child worker's events (for the ownership ledger).
pub struct Recorded {
    pub manager: Manager,
    pub events: Arc<Mutex<Vec<Event>>>,
    /// What the manager reported through `on_error`, as text.
    pub errors: Arc<Mutex<Vec<String>>>,
    serial: u64,
}

impl Recorded {
    /// Unique per manager (worker IDs are reused after a graceful stop).
    pub fn label(&self) -> String {
        format!("{}#{}", self.manager.worker_id(), self.serial)
    }

    pub fn part(&self) -> (String, Vec<Event>) {
        (self.label(), self.events.lock().unwrap().clone())
    }
}

static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Starts (or, with `spawn_only`, spawns without waiting) a recorded manager.
pub fn start_recorded(
    url: &str,
    group: &str,
    n: usize,
    config: &Config,
    spawn_only: bool,
) -> Recorded {
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = events.clone();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let error_sink = errors.clone();
    let nc = parti::store::nats::connect(url).expect("connect");
    let builder = Manager::builder(nc, group)
        .config(config.clone())
        .partitions(StaticSource::new(partitions(n)))
        .on_error(move |e| error_sink.lock().unwrap().push(e.to_string()))
        .on_assignment_changed(move |c| {
            let begin = unix_micros();
            let ids = |ps: &[Partition]| ps.iter().map(|p| p.id().to_string()).collect::<Vec<_>>();
            sink.lock().unwrap().push(serde_json::json!({
                "event": "assignment",
                "version": c.assignment().version(),
                "partitions": ids(c.assignment().partitions()),
                "added": ids(c.added()),
                "removed": ids(c.removed()),
                "tokens": c.assignment().iter().map(|(p, t)| (p.id().to_string(), t)).collect::<BTreeMap<_, _>>(),
                "t_begin": begin,
                "t_end": unix_micros(),
            }));
        });
    let manager = if spawn_only {
        builder.spawn()
    } else {
        builder.start()
    }
    .expect("manager start");
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Recorded {
        manager,
        events,
        errors,
        serial,
    }
}

/// One JSON event line of a child worker.
pub type Event = serde_json::Value;

/// A worker running in a child process.
pub struct ChildWorker {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Arc<Mutex<Vec<Event>>>,
    /// Wall-clock micros of the SIGKILL, if it was killed.
    pub killed_at: Option<u64>,
}

impl ChildWorker {
    pub fn spawn(
        url: &str,
        group: &str,
        n: usize,
        config: &Config,
        preferred: Option<&str>,
    ) -> ChildWorker {
        Self::spawn_with(url, group, n, config, preferred, &[])
    }

    /// Like `spawn`, with extra `parti worker` flags.
    pub fn spawn_with(
        url: &str,
        group: &str,
        n: usize,
        config: &Config,
        preferred: Option<&str>,
        extra: &[&str],
    ) -> ChildWorker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_parti"));
        cmd.args([
            "worker",
            "--server",
            url,
            "--group",
            group,
            "--partitions",
            &n.to_string(),
        ])
        .args(extra)
        .args(config_flags(config))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        if let Some(id) = preferred {
            cmd.args(["--preferred-id", id]);
        }
        let mut child = cmd.spawn().expect("spawn parti worker");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(ev) = serde_json::from_str::<Event>(&line) {
                    sink.lock().unwrap().push(ev);
                }
            }
        });
        ChildWorker {
            child,
            stdin,
            events,
            killed_at: None,
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn worker_id(&self) -> Option<String> {
        self.events()
            .iter()
            .find(|e| e["event"] == "started")
            .and_then(|e| e["worker"].as_str().map(String::from))
    }

    pub fn wait_started(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(id) = self.worker_id() {
                return id;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "child worker did not start within {timeout:?}: {:?}",
            self.events()
        );
    }

    /// The partitions of the last applied assignment.
    pub fn partitions(&self) -> Vec<String> {
        self.events()
            .iter()
            .rev()
            .find(|e| e["event"] == "assignment")
            .map(|e| {
                e["partitions"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| p.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    pub fn is_leader(&self) -> bool {
        self.events()
            .iter()
            .rev()
            .find(|e| e["event"] == "leader")
            .is_some_and(|e| e["is_leader"] == true)
    }

    pub fn saw_state(&self, s: State) -> bool {
        let s = s.to_string();
        self.events()
            .iter()
            .any(|e| e["event"] == "state" && e["to"] == s.as_str())
    }

    pub fn versions(&self) -> Vec<u64> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "assignment")
            .filter_map(|e| e["version"].as_u64())
            .collect()
    }

    /// SIGKILL: no goodbye, no cleanup.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.killed_at.get_or_insert_with(unix_micros);
    }

    /// A label unique to this process (worker IDs are reused by restarts).
    pub fn label(&self) -> String {
        format!(
            "{}#{}",
            self.worker_id().unwrap_or_default(),
            self.child.id()
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP`, `CONT`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Graceful stop: close stdin and wait for the process to exit.
    pub fn stop(&mut self, timeout: Duration) -> bool {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn write_line(&mut self, s: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{s}");
        }
    }
}

impl Drop for ChildWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Owners of each partition among what several workers report.
pub fn owners(reports: &[(String, Vec<String>)]) -> BTreeMap<String, Vec<String>> {
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (w, ps) in reports {
        for p in ps {
            owners.entry(p.clone()).or_default().push(w.clone());
        }
    }
    owners
}

/// Whether each of `n` partitions `p0..` is reported by exactly one worker.
pub fn exactly_once(reports: &[(String, Vec<String>)], n: usize) -> bool {
    let o = owners(reports);
    o.len() == n && o.values().all(|v| v.len() == 1)
}

pub fn manager_report(ms: &[&Manager]) -> Vec<(String, Vec<String>)> {
    ms.iter()
        .map(|m| {
            (
                m.worker_id().to_string(),
                m.assignment()
                    .partitions()
                    .iter()
                    .map(|p| p.id().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// Watches a group's `_meta` record from the outside and keeps every version
/// published, with its reason.
pub struct Observer {
    _backend: NatsBackend,
    _watch: parti::store::Watch,
    metas: Arc<Mutex<Vec<(Instant, MetaRecord)>>>,
    writes: Arc<Mutex<Vec<(Instant, String, AssignmentRecord)>>>,
    store: Arc<dyn KvStore>,
}

impl Observer {
    pub fn new(url: &str, group: &str) -> Observer {
        let backend = NatsBackend::new(
            parti::store::nats::connect(url).expect("connect"),
            Duration::from_secs(2),
        );
        let store = backend
            .open(&BucketConfig::new(
                format!("parti-{group}-assignments"),
                None,
            ))
            .expect("open assignments bucket");
        let watch = store.watch(None).expect("watch assignments");
        let metas = Arc::new(Mutex::new(Vec::new()));
        let writes = Arc::new(Mutex::new(Vec::new()));
        let (meta_sink, write_sink) = (metas.clone(), writes.clone());
        let rx = watch.events().clone();
        std::thread::spawn(move || {
            for ev in rx.iter() {
                let WatchEvent::Put(e) = ev else { continue };
                if e.key == "_meta" {
                    if let Ok(m) = serde_json::from_slice::<MetaRecord>(&e.value) {
                        meta_sink.lock().unwrap().push((Instant::now(), m));
                    }
                } else if let Ok(r) = serde_json::from_slice::<AssignmentRecord>(&e.value) {
                    write_sink
                        .lock()
                        .unwrap()
                        .push((Instant::now(), e.key.clone(), r));
                }
            }
        });
        Observer {
            _backend: backend,
            _watch: watch,
            metas,
            writes,
            store,
        }
    }

    pub fn metas(&self) -> Vec<MetaRecord> {
        self.metas
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Every worker-key write seen (after the initial replay too), with the
    /// instant it arrived.
    pub fn writes(&self) -> Vec<(Instant, String, AssignmentRecord)> {
        self.writes.lock().unwrap().clone()
    }

    /// The highest version published so far.
    pub fn last_version(&self) -> u64 {
        self.metas().iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Every `_meta` seen, with the instant it arrived.
    pub fn timed_metas(&self) -> Vec<(Instant, MetaRecord)> {
        self.metas.lock().unwrap().clone()
    }

    /// The reasons of every published version, in order, handoff steps left
    /// out.
    pub fn rebalances(&self) -> Vec<RebalanceKind> {
        let mut kinds: Vec<RebalanceKind> = Vec::new();
        let mut last_version = 0;
        for m in self.metas() {
            if m.version > last_version && m.reason != RebalanceKind::Handoff {
                kinds.push(m.reason);
            }
            last_version = last_version.max(m.version);
        }
        kinds
    }

    /// The assignment records in the bucket now.
    pub fn records(&self) -> BTreeMap<String, AssignmentRecord> {
        let mut out = BTreeMap::new();
        for k in self.store.keys().unwrap_or_default() {
            if k == "_meta" {
                continue;
            }
            if let Ok(Some(e)) = self.store.get(&k) {
                if let Ok(r) = serde_json::from_slice(&e.value) {
                    out.insert(k, r);
                }
            }
        }
        out
    }
}

pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

#[allow(unused_imports)] // not every test crate waits through this module
pub use crate::support::wait_until;

/// The workers not killed.
pub fn live(workers: &[ChildWorker]) -> Vec<&ChildWorker> {
    workers.iter().filter(|w| w.killed_at.is_none()).collect()
}

/// (label, partitions) of each worker.
pub fn child_reports(workers: &[&ChildWorker]) -> Vec<(String, Vec<String>)> {
    workers
        .iter()
        .map(|w| (w.label(), w.partitions()))
        .collect()
}

/// How many workers believe they lead.
pub fn leaders(workers: &[&ChildWorker]) -> usize {
    workers.iter().filter(|w| w.is_leader()).count()
}

/// Every worker busy, each of `n` partitions owned once, one leader.
pub fn children_settled(workers: &[&ChildWorker], n: usize) -> bool {
    let r = child_reports(workers);
    exactly_once(&r, n) && r.iter().all(|(_, p)| !p.is_empty()) && leaders(workers) == 1
}

/// Asserts that the workers not killed settle within `timeout` (see
/// [`children_settled`]); `what` and every worker's partitions say what
/// did not.
pub fn assert_settles(workers: &[ChildWorker], n: usize, timeout: Duration, what: &str) {
    assert!(
        wait_until(timeout, || children_settled(&live(workers), n)),
        "{what}: not settled within {timeout:?}: {:?}",
        child_reports(&live(workers))
    );
}

/// (label, partitions) of each recorded in-process manager.
pub fn recorded_reports(ms: &[Recorded]) -> Vec<(String, Vec<String>)> {
    ms.iter()
        .map(|r| {
            let ps = r
                .manager
                .assignment()
                .partitions()
                .iter()
                .map(|p| p.id().to_string())
                .collect();
            (r.label(), ps)
        })
        .collect()
}

/// Every manager busy, each of `n` partitions owned once, one leader.
pub fn recorded_settled(ms: &[Recorded], n: usize) -> bool {
    let r = recorded_reports(ms);
    exactly_once(&r, n)
        && r.iter().all(|(_, p)| !p.is_empty())
        && ms.iter().filter(|m| m.manager.is_leader()).count() == 1
}
