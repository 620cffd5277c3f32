//! Worker processes for the consumer failover scenarios: a `Manager` with a
//! `JetStreamConsumer` or a `SubjectSubscriber` in a child process (so a
//! crash is a real SIGKILL), reporting what it does as JSON lines on stdout.
//!
//! Shared by `tests/subscription_failover.rs` (the child is the test binary
//! itself, run on an ignored entry test) and `examples/consumer_failover.rs`
//! (the example binary run with a `worker` argument).
#![allow(dead_code)]
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parti::source::StaticSource;
use parti::subscription::{JetStreamConfig, JetStreamConsumer, SubjectSubscriber};
use parti::{Config, Manager, Partition};
use serde::{Deserialize, Serialize};

/// The environment variable that carries a child's [`WorkerSpec`].
pub const SPEC_VAR: &str = "PARTI_CONSUMER_WORKER";

/// Which helper a worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Helper {
    /// `JetStreamConsumer` on the work-queue stream `ORDERS`
    /// (`orders.{id}.>`).
    JetStream,
    /// `SubjectSubscriber` on `events.{id}.>`.
    Core,
}

/// Everything a child worker needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub url: String,
    pub group: String,
    pub partitions: usize,
    pub helper: Helper,
    /// Manager timings, in milliseconds.
    pub heartbeat_interval_ms: u64,
    pub heartbeat_ttl_ms: u64,
    pub emergency_grace_ms: u64,
    /// Fast profile: also shortens the other windows (as the tests do).
    pub fast: bool,
    /// `JetStreamConfig::fetch_wait`, in milliseconds.
    pub fetch_wait_ms: u64,
    /// Simulated work per message, in milliseconds.
    pub work_ms: u64,
}

pub const STREAM: &str = "ORDERS";

impl WorkerSpec {
    /// The fast profile: heartbeat 200 ms, TTL 800 ms, grace 300 ms.
    pub fn fast(url: &str, group: &str, partitions: usize, helper: Helper) -> WorkerSpec {
        WorkerSpec {
            url: url.to_string(),
            group: group.to_string(),
            partitions,
            helper,
            heartbeat_interval_ms: 200,
            heartbeat_ttl_ms: 800,
            emergency_grace_ms: 300,
            fast: true,
            fetch_wait_ms: 1000,
            work_ms: 1,
        }
    }

    /// parti's defaults.
    pub fn defaults(url: &str, group: &str, partitions: usize, helper: Helper) -> WorkerSpec {
        let d = Config::default();
        WorkerSpec {
            heartbeat_interval_ms: d.heartbeat_interval.as_millis() as u64,
            heartbeat_ttl_ms: d.heartbeat_ttl.as_millis() as u64,
            emergency_grace_ms: d.emergency_grace.as_millis() as u64,
            fast: false,
            ..WorkerSpec::fast(url, group, partitions, helper)
        }
    }

    pub fn config(&self) -> Config {
        let ms = Duration::from_millis;
        let base = if self.fast {
            Config {
                worker_id_ttl: ms(3000),
                election_ttl: ms(1200),
                cold_start_window: ms(1500),
                planned_scale_window: ms(1000),
                rebalance_cooldown: ms(300),
                operation_timeout: ms(300),
                handoff_timeout: ms(3000),
                ..Config::default()
            }
        } else {
            Config::default()
        };
        Config {
            heartbeat_interval: ms(self.heartbeat_interval_ms),
            heartbeat_ttl: ms(self.heartbeat_ttl_ms),
            emergency_grace: ms(self.emergency_grace_ms),
            ..base
        }
    }

    pub fn partition_ids(&self) -> Vec<String> {
        (0..self.partitions).map(|i| format!("p{i}")).collect()
    }

    /// The subject a message of partition `p` is published on.
    pub fn subject(&self, p: &str) -> String {
        match self.helper {
            Helper::JetStream => format!("orders.{p}.x"),
            Helper::Core => format!("events.{p}.x"),
        }
    }
}

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One JSON line on stdout, written whole (a SIGKILL leaves complete lines).
fn emit(line: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{line}");
    let _ = out.flush();
}

enum Running {
    Js(Arc<JetStreamConsumer>),
    Core(Arc<SubjectSubscriber>),
}

/// The child side: runs one worker until stdin closes, then stops it
/// gracefully. Events: `started`, `leader`, `grant` (before `apply`),
/// `release` (after `apply`, with its duration), `handled` (at the handler
/// call's start), `stopped`.
pub fn run_worker(spec: &WorkerSpec) -> Res<()> {
    // A test harness may have left a line open on stdout.
    emit(serde_json::json!({"event": "hello"}));
    let work = Duration::from_millis(spec.work_ms);
    let handled = move |p: &Partition, msg: &nats::Message| {
        let t = unix_micros();
        let n: u64 = String::from_utf8_lossy(&msg.data)
            .parse()
            .unwrap_or(u64::MAX);
        emit(serde_json::json!({"event": "handled", "partition": p.id(), "msg": n, "t": t}));
        std::thread::sleep(work);
    };
    let running = match spec.helper {
        Helper::JetStream => Running::Js(Arc::new(JetStreamConsumer::start(
            parti::store::nats::connect(&spec.url)?,
            JetStreamConfig {
                fetch_wait: Duration::from_millis(spec.fetch_wait_ms),
                ..JetStreamConfig::new(STREAM, spec.group.clone(), "orders.{id}.>")
            },
            move |p, msg| {
                handled(p, msg);
                Ok(())
            },
        )?)),
        Helper::Core => Running::Core(Arc::new(SubjectSubscriber::new(
            parti::store::nats::connect(&spec.url)?,
            "events.{id}.>",
            handled,
        )?)),
    };
    let apply: Box<dyn Fn(&parti::AssignmentChange) + Send + Sync> = match &running {
        Running::Js(c) => {
            let c = c.clone();
            Box::new(move |ch| c.apply(ch))
        }
        Running::Core(s) => {
            let s = s.clone();
            Box::new(move |ch| s.apply(ch))
        }
    };
    let manager = Manager::builder(parti::store::nats::connect(&spec.url)?, spec.group.clone())
        .config(spec.config())
        .partitions(StaticSource::new(
            spec.partition_ids().into_iter().map(Partition::new),
        ))
        .on_leadership_changed(|l| emit(serde_json::json!({"event": "leader", "is_leader": l})))
        .on_assignment_changed(move |c| {
            let ids = |ps: &[Partition]| ps.iter().map(|p| p.id().to_string()).collect::<Vec<_>>();
            let begin = unix_micros();
            emit(serde_json::json!({"event": "grant", "partitions": ids(c.added()), "t": begin}));
            apply(c);
            let end = unix_micros();
            emit(serde_json::json!({
                "event": "release", "partitions": ids(c.removed()), "t": end, "took_us": end - begin,
            }));
        })
        .start()?;
    emit(serde_json::json!({"event": "started", "worker": manager.worker_id()}));
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    manager.stop()?;
    match &running {
        Running::Js(c) => c.stop()?,
        Running::Core(s) => s.stop(),
    }
    emit(serde_json::json!({"event": "stopped", "t": unix_micros()}));
    Ok(())
}

/// One event line of a child.
pub type Event = serde_json::Value;

/// The parent side: a child worker process.
pub struct WorkerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Arc<Mutex<Vec<Event>>>,
    /// Unique among the scenario's workers (IDs are reused).
    pub label: String,
    /// When it was killed (unix micros), if it was.
    pub killed_at: Option<u64>,
    /// It was stopped gracefully and has exited.
    pub stopped: bool,
}

impl WorkerProcess {
    /// Runs `program args...` with `spec` in [`SPEC_VAR`].
    pub fn spawn(program: &str, args: &[String], spec: &WorkerSpec, label: &str) -> Res<Self> {
        let mut child = Command::new(program)
            .args(args)
            .env(SPEC_VAR, serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(ev) = serde_json::from_str::<Event>(&line) {
                    if let Ok(mut events) = sink.lock() {
                        events.push(ev);
                    }
                }
            }
        });
        Ok(WorkerProcess {
            stdin: child.stdin.take(),
            child,
            events,
            label: label.to_string(),
            killed_at: None,
            stopped: false,
        })
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    pub fn started(&self) -> bool {
        self.events().iter().any(|e| e["event"] == "started")
    }

    pub fn is_leader(&self) -> bool {
        self.events()
            .iter()
            .rev()
            .find(|e| e["event"] == "leader")
            .is_some_and(|e| e["is_leader"] == true)
    }

    /// Partitions owned after the last complete callback (granted before
    /// `apply` and not released after it).
    pub fn owned(&self) -> BTreeSet<String> {
        let mut owned = BTreeSet::new();
        for e in self.events() {
            let ids = e["partitions"].as_array().cloned().unwrap_or_default();
            let ids = ids.iter().filter_map(|p| p.as_str().map(String::from));
            match e["event"].as_str() {
                Some("grant") => owned.extend(ids),
                Some("release") => ids.for_each(|p| {
                    owned.remove(&p);
                }),
                _ => {}
            }
        }
        owned
    }

    /// Longest callback that released partitions (or, with `granting`,
    /// granted some), in microseconds.
    pub fn longest_callback_us(&self, granting: bool) -> u64 {
        let events = self.events();
        let mut longest = 0;
        for (i, e) in events.iter().enumerate() {
            if e["event"] != "grant" {
                continue;
            }
            let Some(end) = events[i + 1..].iter().find(|e| e["event"] == "release") else {
                break;
            };
            let which = if granting { e } else { end };
            if which["partitions"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
            {
                longest = longest.max(end["took_us"].as_u64().unwrap_or(0));
            }
        }
        longest
    }

    /// (begin, end) in unix micros of the first callback that began at or
    /// after `after` and granted `p` (or, with `removed`, released it).
    pub fn callback_for(&self, p: &str, removed: bool, after: u64) -> Option<(u64, u64)> {
        let events = self.events();
        let has = |e: &Event| {
            e["partitions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == p))
        };
        for (i, e) in events.iter().enumerate() {
            let begin = e["t"].as_u64().unwrap_or(0);
            if e["event"] != "grant" || begin < after {
                continue;
            }
            // The same callback's closing event.
            let end = events[i + 1..].iter().find(|e| e["event"] == "release")?;
            if has(if removed { end } else { e }) {
                return Some((begin, end["t"].as_u64().unwrap_or(u64::MAX)));
            }
        }
        None
    }

    /// (partition, message, unix micros) of every handler call.
    pub fn handled(&self) -> Vec<(String, u64, u64)> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "handled")
            .filter_map(|e| {
                Some((
                    e["partition"].as_str()?.to_string(),
                    e["msg"].as_u64()?,
                    e["t"].as_u64()?,
                ))
            })
            .collect()
    }

    /// SIGKILL: no goodbye, no cleanup.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.killed_at.get_or_insert_with(unix_micros);
    }

    /// Graceful stop: closes stdin and waits for the process to exit.
    pub fn stop(&mut self, timeout: Duration) -> bool {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.stopped = true;
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether every partition is owned by exactly one of `workers` (killed
/// ones left out).
pub fn settled(workers: &[&WorkerProcess], partitions: &[String]) -> bool {
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for w in workers
        .iter()
        .filter(|w| w.killed_at.is_none() && !w.stopped)
    {
        for p in w.owned() {
            *owners.entry(p).or_default() += 1;
        }
    }
    partitions.iter().all(|p| owners.get(p) == Some(&1)) && owners.len() == partitions.len()
}
