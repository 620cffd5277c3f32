//! End-to-end figures on one machine: many managers on one nats-server, and
//! failover latency over repeated crashes.
//!
//! ```text
//! cargo build --release --bin parti --example scale
//! target/release/examples/scale scale 200 10000     # managers, partitions
//! target/release/examples/scale scale 1000 100000 15 # ..., cold-start window (s)
//! target/release/examples/scale failover 20         # runs of each kind
//! target/release/examples/scale restart 20 5         # managers, restarts
//! target/release/examples/scale profiles 3 10        # runs at Config::default(), Config::fast()
//! ```
//! Starts its own nats-server (`NATS_SERVER_BIN`, else `nats-server` on PATH)
//! on 127.0.0.1 with a temp dir. Failover runs use `parti worker` child
//! processes (built next to this example) so a crash is a real SIGKILL.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "scale/fleet.rs"]
mod fleet;
#[path = "scale/profiles.rs"]
mod profiles;
#[path = "scale/restart.rs"]
mod restart;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Server {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Server {
    fn start() -> Res<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("parti-scale-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = Server::spawn(port, &dir)?;
        Ok(Server {
            child,
            port,
            _dir: dir,
        })
    }

    /// Starts nats-server on `port` storing under `dir`; returns once it
    /// accepts connections.
    fn spawn(port: u16, dir: &PathBuf) -> Res<Child> {
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".into());
        let mut child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("nats-server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(child)
    }

    /// SIGKILLs the server, waits `outage`, starts it again on the same
    /// port and storage; returns when it accepts connections again.
    fn restart(&mut self, outage: Duration) -> Res<Instant> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(outage);
        self.child = Server::spawn(self.port, &self._dir)?;
        Ok(Instant::now())
    }

    fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Last sequence of a stream: every KV write adds one.
    fn stream_seq(&self, nc: &nats::Connection, stream: &str) -> u64 {
        nc.request_timeout(
            &format!("$JS.API.STREAM.INFO.{stream}"),
            b"",
            Duration::from_secs(2),
        )
        .ok()
        .and_then(|m| serde_json::from_slice::<serde_json::Value>(&m.data).ok())
        .and_then(|v| v["state"]["last_seq"].as_u64())
        .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// A `parti worker` child process and its event lines.
struct Worker {
    child: Child,
    events: Arc<Mutex<Vec<(Instant, serde_json::Value)>>>,
}

impl Worker {
    fn spawn(bin: &PathBuf, url: &str, group: &str, n: usize, flags: &[String]) -> Res<Worker> {
        let mut child = Command::new(bin)
            .args([
                "worker",
                "--server",
                url,
                "--group",
                group,
                "--partitions",
                &n.to_string(),
            ])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    sink.lock().map(|mut e| e.push((Instant::now(), v))).ok();
                }
            }
        });
        Ok(Worker { child, events })
    }

    fn last(&self, kind: &str) -> Option<(Instant, serde_json::Value)> {
        self.events
            .lock()
            .ok()?
            .iter()
            .rev()
            .find(|(_, e)| e["event"] == kind)
            .cloned()
    }

    fn partitions(&self) -> Vec<String> {
        self.last("assignment")
            .and_then(|(_, e)| e["partitions"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.as_str().map(String::from))
            .collect()
    }

    fn is_leader(&self) -> bool {
        self.last("leader")
            .is_some_and(|(_, e)| e["is_leader"] == true)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn owned_once(ws: &[&Worker], n: usize) -> bool {
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for w in ws {
        for p in w.partitions() {
            *owners.entry(p).or_default() += 1;
        }
    }
    owners.len() == n && owners.values().all(|c| *c == 1)
}

fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The `parti` binary built next to this example.
fn parti_bin() -> Res<PathBuf> {
    let bin = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("parti"))
        .ok_or("cannot locate the parti binary")?;
    if !bin.exists() {
        return Err(format!(
            "{} not found: cargo build --release --bin parti",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

fn failover(runs: usize) -> Res<()> {
    let bin = parti_bin()?;
    let server = Server::start()?;
    let config = [
        "heartbeat_interval=200ms",
        "heartbeat_ttl=800ms",
        "emergency_grace=300ms",
        "election_ttl=1200ms",
        "cold_start_window=1000ms",
        "planned_scale_window=500ms",
        "rebalance_cooldown=200ms",
        "operation_timeout=300ms",
        "worker_id_ttl=3s",
    ];
    let flags: Vec<String> = config
        .iter()
        .flat_map(|c| ["--set".to_string(), c.to_string()])
        .collect();
    let n = 60;
    let (mut crash, mut lead) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let group = format!("fo{run}");
        let workers: Vec<Worker> = (0..4)
            .map(|_| Worker::spawn(&bin, &server.url(), &group, n, &flags))
            .collect::<Res<_>>()?;
        let all: Vec<&Worker> = workers.iter().collect();
        if !wait(Duration::from_secs(20), || {
            owned_once(&all, n) && all.iter().filter(|w| w.is_leader()).count() == 1
        }) {
            return Err(format!("run {run}: group did not settle").into());
        }
        // Worker crash: a follower is killed; time until the others own all.
        let mut workers = workers;
        let f = workers
            .iter()
            .position(|w| !w.is_leader())
            .ok_or("no follower")?;
        let mut victim = workers.remove(f);
        let t0 = Instant::now();
        let _ = victim.child.kill();
        let rest: Vec<&Worker> = workers.iter().collect();
        if !wait(Duration::from_secs(10), || owned_once(&rest, n)) {
            return Err(format!("run {run}: crash failover did not finish").into());
        }
        crash.push(t0.elapsed().as_secs_f64() * 1000.0);
        // Leader crash: time until every partition is owned again, under a
        // new leader (a survivor applied an assignment of a newer epoch).
        let l = workers
            .iter()
            .position(|w| w.is_leader())
            .ok_or("no leader")?;
        let old_epoch = workers[l]
            .last("assignment")
            .and_then(|(_, e)| e["epoch"].as_u64())
            .unwrap_or(0);
        let mut leader = workers.remove(l);
        let t0 = Instant::now();
        let _ = leader.child.kill();
        let rest: Vec<&Worker> = workers.iter().collect();
        let published = wait(Duration::from_secs(10), || {
            owned_once(&rest, n)
                && rest.iter().any(|w| {
                    w.last("assignment")
                        .and_then(|(_, e)| e["epoch"].as_u64())
                        .unwrap_or(0)
                        > old_epoch
                })
        });
        if !published {
            return Err(format!("run {run}: no new leader published").into());
        }
        lead.push(t0.elapsed().as_secs_f64() * 1000.0);
        drop(victim);
        drop(leader);
    }
    let crash_bound = 800.0 + 300.0;
    // Lease TTL (a follower takes over once the lease stood still that
    // long) + the renewal period (the last renewal may precede the crash
    // by that much) + 200 ms: the new leader dates the replayed heartbeats
    // by its own (`core::leader::BeatLog`), so its predecessor's worker is
    // already past TTL + grace when it takes office.
    let lead_bound = 1200.0 + 400.0 + 200.0;
    println!("| failover ({runs} runs) | p50 | p99 | theoretical bound |");
    println!("|---|---|---|---|");
    println!(
        "| worker crash → survivors own everything | {:.0} ms | {:.0} ms | {crash_bound:.0} ms (heartbeat TTL + grace) |",
        percentile(&mut crash.clone(), 0.5),
        percentile(&mut crash, 0.99)
    );
    let max = lead.iter().copied().fold(0.0, f64::max);
    println!(
        "| leader crash → everything owned under a new leader | {:.0} ms | {:.0} ms | {lead_bound:.0} ms (lease TTL + renewal period + 200 ms); max {max:.0} ms |",
        percentile(&mut lead.clone(), 0.5),
        percentile(&mut lead, 0.99)
    );
    Ok(())
}

fn main() -> Res<()> {
    // RUST_LOG=parti=info shows the leader's rebalances, with milliseconds.
    let _ = env_logger::Builder::from_default_env()
        .format_timestamp_millis()
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("scale") => fleet::run(
            num(1, 200),
            num(2, 10_000),
            Duration::from_secs(num(3, 5) as u64),
        ),
        Some("failover") => failover(num(1, 20)),
        Some("restart") => restart::run(num(1, 20), num(2, 5)),
        Some("profiles") => profiles::run(&parti_bin()?, num(1, 3), num(2, 10)),
        _ => Err(
            "usage: scale [managers] [partitions] [cold-start window s] | failover [runs] | restart [managers] [runs] | profiles [runs default] [runs fast]"
                .into(),
        ),
    }
}
