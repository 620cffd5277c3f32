//! The `parti` operator commands against a live group on a real nats-server.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use group::{fast_config, wait_until};
use parti::source::KvSource;
use parti::Manager;
use serde_json::Value;
use support::NatsServer;

fn parti(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parti"))
        .args(args)
        .output()
        .expect("run parti")
}

fn ok(args: &[&str]) -> String {
    let out = parti(args);
    assert!(
        out.status.success(),
        "parti {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start(url: &str, group: &str) -> Manager {
    let conn = parti::store::nats::connect(url).unwrap();
    let source = KvSource::connect(conn, group, Duration::from_secs(2)).unwrap();
    Manager::builder(parti::store::nats::connect(url).unwrap(), group)
        .config(fast_config())
        .partitions(source)
        .start()
        .expect("start")
}

fn status(url: &str, group: &str) -> Value {
    serde_json::from_str(&ok(&[
        "status", "--server", url, "--group", group, "--json",
    ]))
    .expect("status JSON")
}

fn total_partitions(s: &Value) -> u64 {
    s["workers"]
        .as_array()
        .map(|ws| ws.iter().filter_map(|w| w["partitions"].as_u64()).sum())
        .unwrap_or(0)
}

#[test]
fn partitions_status_and_watch_on_a_live_group() {
    let server = NatsServer::start();
    let url = server.url();
    let g = "cli";
    ok(&[
        "partitions",
        "add",
        "--server",
        &url,
        "--group",
        g,
        "p0",
        "p1",
        "p2",
    ]);
    ok(&[
        "partitions",
        "add",
        "--server",
        &url,
        "--group",
        g,
        "--weight",
        "3",
        "heavy",
    ]);
    let listed: Value = serde_json::from_str(&ok(&[
        "partitions",
        "list",
        "--server",
        &url,
        "--group",
        g,
        "--json",
    ]))
    .unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(4), "{listed}");
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == "heavy" && p["weight"] == 3));

    let a = start(&url, g);
    let b = start(&url, g);
    assert!(wait_until(Duration::from_secs(10), || a.assignment().len()
        + b.assignment().len()
        == 4));

    let s = status(&url, g);
    let leader = if a.is_leader() {
        a.worker_id()
    } else {
        b.worker_id()
    };
    assert_eq!(s["leader"]["worker"], leader, "{s}");
    assert!(s["leader"]["epoch"].as_u64().unwrap_or(0) > 0);
    assert_eq!(s["workers"].as_array().map(Vec::len), Some(2), "{s}");
    assert_eq!(total_partitions(&s), 4);
    assert_eq!(s["unassigned"], serde_json::json!([]));
    assert!(s["assignment"]["version"].as_u64().unwrap_or(0) > 0);
    for w in s["workers"].as_array().unwrap() {
        assert!(
            w["heartbeat_age_s"].as_f64().is_some_and(|age| age < 2.0),
            "{w}"
        );
        assert!(w["applied_version"].as_u64().is_some());
    }
    let text = ok(&["status", "--server", &url, "--group", g]);
    assert!(text.contains(&format!("leader     {leader}")), "{text}");
    assert!(
        text.contains(a.worker_id()) && text.contains(b.worker_id()),
        "{text}"
    );

    // `watch` reports the rebalance that adding a partition causes.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_parti"))
        .args(["watch", "--server", &url, "--group", g, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn watch");
    let lines = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = lines.clone();
    let stdout = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    let meta_versions = |lines: &Arc<Mutex<Vec<Value>>>| -> Vec<u64> {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l["bucket"] == "assignments" && l["key"] == "_meta")
            .filter_map(|l| l["detail"]["version"].as_u64())
            .collect()
    };
    // The replay shows the current state of all three buckets first.
    assert!(wait_until(Duration::from_secs(5), || {
        let l = lines.lock().unwrap();
        ["workers", "leader", "assignments"]
            .iter()
            .all(|b| l.iter().any(|e| e["bucket"] == *b))
    }));
    let before = meta_versions(&lines).into_iter().max().unwrap_or(0);
    ok(&["partitions", "add", "--server", &url, "--group", g, "p9"]);
    assert!(
        wait_until(Duration::from_secs(10), || meta_versions(&lines)
            .iter()
            .any(|v| *v > before)),
        "no new version seen by watch: {:?}",
        lines.lock().unwrap()
    );
    assert!(lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l["detail"]["reason"] == "partitions_changed"));
    let _ = watch.kill();
    let _ = watch.wait();

    ok(&[
        "partitions",
        "remove",
        "--server",
        &url,
        "--group",
        g,
        "p0",
        "p9",
    ]);
    assert!(wait_until(Duration::from_secs(10), || {
        let s = status(&url, g);
        total_partitions(&s) == 3 && s["assignment"]["partitions"] == 3
    }));
    a.stop().unwrap();
    b.stop().unwrap();
}

#[test]
fn clear_errors_for_bad_input() {
    let server = NatsServer::start();
    let url = server.url();
    let out = parti(&["status", "--server", &url, "--group", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    let out = parti(&["status", "--server", &url]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--group is required"));

    let out = parti(&["status", "--server", &url, "--group", "g", "--user", "u"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password"));

    let out = parti(&[
        "status", "--server", &url, "--group", "g", "--token", "t", "--user", "u",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one"));

    let out = parti(&[
        "partitions",
        "add",
        "--server",
        &url,
        "--group",
        "g",
        "bad id!",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid partition"));

    let out = parti(&["status", "--server", "127.0.0.1:1", "--group", "g"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

/// A nats-server started with extra flags (here: authentication), killed
/// when dropped.
struct AuthServer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl AuthServer {
    fn start(flags: &[&str]) -> AuthServer {
        let dir = tempfile::tempdir().unwrap();
        let port = support::free_port();
        let child = Command::new(support::server_bin())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nats-server");
        let ready = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ready, "nats-server with {flags:?} did not listen");
        AuthServer {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stderr_of(args: &[&str]) -> (bool, String) {
    let out = parti(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn credentials_are_passed_to_nats() {
    let server = AuthServer::start(&["--user", "ops", "--pass", "s3cret"]);
    let url = server.url();
    let base = [
        "partitions",
        "list",
        "--server",
        url.as_str(),
        "--group",
        "auth",
    ];

    let (ok, err) = stderr_of(&[&base[..], &["--user", "ops", "--password", "s3cret"]].concat());
    assert!(ok, "correct credentials: {err}");
    let (ok, err) = stderr_of(&[&base[..], &["--user", "ops", "--password", "wrong"]].concat());
    assert!(!ok);
    assert!(err.to_lowercase().contains("authorization"), "{err}");
    let (ok, err) = stderr_of(&base);
    assert!(!ok && err.to_lowercase().contains("authorization"), "{err}");

    let server = AuthServer::start(&["--auth", "tok3n"]);
    let url = server.url();
    let base = ["status", "--server", url.as_str(), "--group", "auth"];
    let (ok, err) = stderr_of(&[&base[..], &["--token", "tok3n"]].concat());
    // Connected and authorized: the group simply does not exist yet.
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, err) = stderr_of(&[&base[..], &["--token", "nope"]].concat());
    assert!(!ok && err.to_lowercase().contains("authorization"), "{err}");
}
