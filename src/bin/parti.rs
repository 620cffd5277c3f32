//! `parti`: run a worker or inspect a group from the command line.
//!
//! ```text
//! parti status --group G [--json] [CONNECTION]
//! parti watch --group G [--json] [--heartbeats] [CONNECTION]
//! parti partitions add|remove|list --group G [--weight N] [--replicas N] [--json] [ID...] [CONNECTION]
//! parti plan --group G [--add N] [--remove WORKER...] [--prefix P]
//!            [--strategy bounded-load|consistent-hash|round-robin] [--epsilon E] [--json] [CONNECTION]
//! parti doctor --group G [--set FIELD=DURATION]... [--replicas N] [--check-permissions] [--json] [CONNECTION]
//! parti drain --group G WORKER [--wait [--timeout SECS]] [--force] [--json] [CONNECTION]
//! parti undrain --group G WORKER [--json] [CONNECTION]
//! parti rebalance --group G [--json] [CONNECTION]
//! parti worker --server URL --group G --partitions N [--preferred-id ID]
//!              [--release-ms MS] [--set FIELD=DURATION]...
//!
//! CONNECTION: [--server URL] [--user U --password P | --token T | --creds FILE
//!             | --nkey SEEDFILE] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]
//! ```
//! - `status` prints the workers (heartbeat age, applied version, partition
//!   count), the leader and its epoch, the assignment version and reason, and
//!   the partitions of a KV source that nobody holds. Heartbeat ages compare
//!   the server's timestamps with this machine's clock.
//! - `watch` prints one line per change in the group's workers, leader and
//!   assignments buckets (heartbeats and lease renewals that change nothing
//!   else only with `--heartbeats`) until it is killed.
//! - `partitions` edits the group's KV partition source
//!   (`parti-<group>-partitions`); running groups rebalance by themselves.
//! - `plan` prints what would move if `--add N` workers joined and/or the
//!   `--remove` ones left, computed with the group's strategy (BoundedLoad
//!   unless `--strategy` says otherwise) from the live state. Writes nothing.
//! - `doctor` checks the buckets' settings and replicas, their TTLs against
//!   the workers' configuration (their `--set` flags), and the records
//!   (stale, undecodable or inconsistent ones, e.g. a partition listed
//!   under two workers); with `--check-permissions`, that the connecting
//!   user may run a worker. Exits 3 when it finds a problem.
//! - `drain` gives a worker no partitions (it keeps running; its work moves
//!   to the others by revoke-before-grant at once); with `--wait` it returns
//!   once the worker holds nothing. `undrain` lets it take work again. A
//!   drain is kept in KV: it outlasts leader changes and restarts.
//!   `rebalance` makes the leader rebalance now (windows and cooldown
//!   skipped, handoffs kept). Exits 1 when `--wait` times out.
//! - `worker` joins the group and prints one JSON line per event (started,
//!   assignment, state, leader, error) until it is killed or its standard
//!   input closes, then stops gracefully.

#[path = "parti/args.rs"]
mod args;
#[path = "parti/buckets.rs"]
mod buckets;
#[path = "parti/connect.rs"]
mod connect;
#[path = "parti/control.rs"]
mod control;
#[path = "parti/doctor.rs"]
mod doctor;
#[path = "parti/partitions.rs"]
mod partitions;
#[path = "parti/plan.rs"]
mod plan;
#[path = "parti/settings.rs"]
mod settings;
#[path = "parti/snapshot.rs"]
mod snapshot;
#[path = "parti/status.rs"]
mod status;
#[path = "parti/watch.rs"]
mod watch;

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use parti::source::StaticSource;
use parti::{Config, Manager, Partition};
use settings::set_field;

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  parti status --group G [--json] {c}\n  parti watch --group G [--json] [--heartbeats] {c}\n  \
         parti partitions add|remove|list --group G [--weight N] [--replicas N] [--json] [ID...] {c}\n  \
         parti plan --group G [--add N] [--remove WORKER...] [--prefix P] [--strategy S] [--epsilon E] [--json] {c}\n  \
         parti doctor --group G [--set FIELD=DURATION]... [--replicas N] [--check-permissions] [--json] {c}\n  \
         parti drain --group G WORKER [--wait [--timeout SECS]] [--force] [--json] {c}\n  \
         parti undrain --group G WORKER [--json] {c}\n  \
         parti rebalance --group G [--json] {c}\n  \
         parti worker --server URL --group G --partitions N [--preferred-id ID] [--release-ms MS] [--set FIELD=DURATION]...",
        c = connect::USAGE
    );
    ExitCode::from(2)
}

fn emit(line: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

fn worker(args: &[String]) -> Result<(), String> {
    let mut server = "127.0.0.1:4222".to_string();
    let mut group = None;
    let mut partitions = 0usize;
    let mut preferred = None;
    let mut release_ms = 0u64;
    let mut config = Config::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--server" => server = value()?,
            "--group" => group = Some(value()?),
            "--partitions" => {
                partitions = value()?
                    .parse()
                    .map_err(|_| "bad --partitions".to_string())?
            }
            "--preferred-id" => preferred = Some(value()?),
            "--release-ms" => {
                release_ms = value()?
                    .parse()
                    .map_err(|_| "bad --release-ms".to_string())?
            }
            "--set" => set_field(&mut config, &value()?)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let group = group.ok_or("--group is required")?;
    let nc = parti::store::nats::connect(&server).map_err(|e| format!("connect {server}: {e}"))?;
    let mut builder = Manager::builder(nc, group)
        .config(config)
        .partitions(StaticSource::new((0..partitions).map(|i| Partition::new(format!("p{i}")))))
        .on_assignment_changed(move |c| {
            // Ownership of added partitions starts when this is called; of
            // removed ones it ends when this returns (after the simulated
            // release work).
            let begin = unix_micros();
            if !c.removed().is_empty() && release_ms > 0 {
                std::thread::sleep(Duration::from_millis(release_ms));
            }
            let ids = |ps: &[Partition]| ps.iter().map(|p| p.id().to_string()).collect::<Vec<_>>();
            emit(serde_json::json!({
                "event": "assignment",
                "version": c.assignment().version(),
                "epoch": c.assignment().epoch(),
                "partitions": ids(c.assignment().partitions()),
                "added": ids(c.added()),
                "removed": ids(c.removed()),
                "t_begin": begin,
                "t_end": unix_micros(),
            }));
        })
        .on_state_changed(|from, to| {
            emit(serde_json::json!({"event": "state", "from": from.to_string(), "to": to.to_string()}))
        })
        .on_leadership_changed(|leader| emit(serde_json::json!({"event": "leader", "is_leader": leader})))
        .on_error(|e| emit(serde_json::json!({"event": "error", "message": e.to_string()})));
    if let Some(id) = preferred {
        builder = builder.preferred_id(id);
    }
    let manager = builder.start().map_err(|e| e.to_string())?;
    emit(
        serde_json::json!({"event": "started", "worker": manager.worker_id(), "t": unix_micros()}),
    );
    // Run until stdin closes (the parent says "stop" by closing it).
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    manager.stop().map_err(|e| e.to_string())?;
    emit(serde_json::json!({"event": "stopped"}));
    Ok(())
}

fn main() -> ExitCode {
    let _ = env_logger_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        return usage();
    };
    let result = match cmd.as_str() {
        "worker" => worker(&args[1..]),
        "status" => status::run(&args[1..]),
        "watch" => watch::run(&args[1..]),
        "partitions" => partitions::run(&args[1..]),
        "plan" => plan::run(&args[1..]),
        "drain" => control::run(control::Verb::Drain, &args[1..]),
        "undrain" => control::run(control::Verb::Undrain, &args[1..]),
        "rebalance" => control::run(control::Verb::Rebalance, &args[1..]),
        "doctor" => match doctor::run(&args[1..]) {
            Ok(true) => Ok(()),
            // The report on stdout names the problems.
            Ok(false) => return ExitCode::from(3),
            Err(e) => Err(e),
        },
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parti: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr when `RUST_LOG` is set; a tiny logger keeps the binary
/// free of extra dependencies.
fn env_logger_init() -> Result<(), log::SetLoggerError> {
    struct Stderr(log::LevelFilter);
    impl log::Log for Stderr {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= self.0
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() % 100_000)
                    .unwrap_or_default();
                eprintln!("{ms:>5} {} {} {}", r.level(), r.target(), r.args());
            }
        }
        fn flush(&self) {}
    }
    let level = match std::env::var("RUST_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("info") => log::LevelFilter::Info,
        Ok("warn") => log::LevelFilter::Warn,
        Ok(_) => log::LevelFilter::Info,
        Err(_) => log::LevelFilter::Off,
    };
    log::set_max_level(level);
    log::set_logger(Box::leak(Box::new(Stderr(level))))
}
