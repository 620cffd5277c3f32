//! `parti drain|undrain WORKER` and `parti rebalance`: operator requests.
//!
//! The request is the group's [`ControlRecord`], kept in the assignments
//! bucket (whose keys never expire, so a drain outlasts any leader) and
//! changed by compare-and-set; then a nudge under the same key in the
//! workers bucket, which the leader watches, makes it read the record now.
//! With `--wait`, `drain` returns once the worker holds nothing: its
//! assignment key is empty and its heartbeat says it applied that version
//! (its release callback returned).
#![allow(deprecated)] // every item of the `nats` 0.26 crate is deprecated

use std::time::{Duration, Instant};

use parti::wire::{self, AssignmentRecord, ControlRecord, WorkerRecord, CONTROL_KEY};
use parti::BucketNames;
use serde_json::{json, Value};

use super::args::Args;
use super::connect::connect;
use super::snapshot::open;

/// Compare-and-set attempts before giving up on a busy record.
const ATTEMPTS: usize = 5;

/// What to change.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Drain,
    Undrain,
    Rebalance,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Drain => "drain",
            Verb::Undrain => "undrain",
            Verb::Rebalance => "rebalance",
        }
    }
}

/// Runs `parti drain|undrain|rebalance`.
pub fn run(verb: Verb, raw: &[String]) -> Result<(), String> {
    let args = Args::parse(raw, &["--timeout"], &["--json", "--wait", "--force"])?;
    let group = args.group()?;
    let worker = match (verb, args.positional.as_slice()) {
        (Verb::Rebalance, []) => None,
        (Verb::Rebalance, [extra, ..]) => return Err(format!("unexpected argument {extra:?}")),
        (_, [w]) => Some(w.clone()),
        (v, _) => return Err(format!("{} wants exactly one worker ID", v.name())),
    };
    let timeout = match args.value("--timeout") {
        Some(s) => Duration::from_secs_f64(
            s.parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t > 0.0)
                .ok_or_else(|| format!("bad --timeout {s:?} (seconds)"))?,
        ),
        None => Duration::from_secs(30),
    };
    let names = BucketNames::for_group(group).map_err(|e| e.to_string())?;
    let nc = connect(&args)?;
    let js = nats::jetstream::new(nc.clone());
    let missing = |b: &str| format!("group {group} not found (no bucket {b})");
    let workers = open(&js, &names.workers)?.ok_or_else(|| missing(&names.workers))?;
    let assignments = open(&js, &names.assignments)?.ok_or_else(|| missing(&names.assignments))?;
    if let (Some(w), Verb::Drain, false) = (&worker, verb, args.has("--force")) {
        // A typo would otherwise drain nobody and say nothing.
        if live(&workers, w)?.is_none() {
            return Err(format!(
                "no live worker {w} in group {group} (--force drains an ID ahead of time)"
            ));
        }
    }
    let (record, revision, changed) = change(&assignments, &names.assignments, verb, &worker)?;
    workers
        .put(CONTROL_KEY, revision.to_string())
        .map_err(|e| format!("nudging the leader: {e}"))?;
    let mut out = json!({
        "group": group,
        "action": verb.name(),
        "changed": changed,
        "drained": record.drained,
        "rebalance_requests": record.rebalance,
        "revision": revision,
    });
    if let Some(w) = &worker {
        out["worker"] = json!(w);
    }
    if let (Some(w), Verb::Drain, true) = (&worker, verb, args.has("--wait")) {
        let released = wait_released(&workers, &assignments, &names.assignments, w, timeout)?;
        out["released"] = json!(released);
        if !released {
            print(&out, args.has("--json"));
            return Err(format!("{w} still holds partitions after {timeout:?}"));
        }
    }
    print(&out, args.has("--json"));
    nc.close();
    Ok(())
}

fn print(out: &Value, json: bool) {
    if json {
        println!("{out}");
        return;
    }
    let drained: Vec<&str> = out["drained"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let what = match (out["action"].as_str(), out["worker"].as_str()) {
        (Some("rebalance"), _) => format!(
            "rebalance requested (request {})",
            out["rebalance_requests"]
        ),
        (Some(a), Some(w)) if out["changed"] == json!(false) => format!("{w}: already {a}ed"),
        (Some(a), Some(w)) => format!("{w}: {a}ed"),
        _ => String::new(),
    };
    let released = match out["released"].as_bool() {
        Some(true) => "; it holds nothing now",
        _ => "",
    };
    println!(
        "{what}{released}; drained workers: {}",
        if drained.is_empty() {
            "none".to_string()
        } else {
            drained.join(", ")
        }
    );
}

/// `key`'s live entry (not deleted), if any.
fn live(store: &nats::kv::Store, key: &str) -> Result<Option<nats::kv::Entry>, String> {
    let entry = store
        .entry(key)
        .map_err(|e| format!("reading {key} in {}: {e}", store.bucket()))?;
    Ok(entry.filter(|e| e.operation == nats::kv::Operation::Put))
}

/// Applies `verb` to the control record by compare-and-set; the record
/// written (or found, when nothing changes), its revision, and whether it
/// changed.
fn change(
    store: &nats::kv::Store,
    bucket: &str,
    verb: Verb,
    worker: &Option<String>,
) -> Result<(ControlRecord, u64, bool), String> {
    let mut last_error = String::new();
    for _ in 0..ATTEMPTS {
        let entry = store
            .entry(CONTROL_KEY)
            .map_err(|e| format!("reading {CONTROL_KEY}: {e}"))?;
        let (mut record, revision) = match &entry {
            Some(e) if e.operation == nats::kv::Operation::Put => (
                wire::decode::<ControlRecord>(bucket, CONTROL_KEY, &e.value)
                    .map_err(|e| e.to_string())?,
                Some(e.revision),
            ),
            Some(e) => (ControlRecord::default(), Some(e.revision)),
            None => (ControlRecord::default(), None),
        };
        let changed = match (verb, worker) {
            (Verb::Drain, Some(w)) => record.drained.insert(w.clone()),
            (Verb::Undrain, Some(w)) => record.drained.remove(w),
            _ => {
                record.rebalance = record
                    .rebalance
                    .checked_add(1)
                    .filter(|n| *n <= wire::MAX_COUNTER)
                    .ok_or("rebalance counter exhausted")?;
                true
            }
        };
        if !changed {
            // Nudged all the same: a leader that missed the change reads it.
            return Ok((record, revision.unwrap_or(0), false));
        }
        let value = wire::encode(&record);
        let written = match revision {
            Some(rev) => store.update(CONTROL_KEY, &value, rev),
            None => store.create(CONTROL_KEY, &value),
        };
        match written {
            Ok(rev) => return Ok((record, rev, true)),
            // Someone else changed it meanwhile: read again.
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(format!(
        "{CONTROL_KEY} kept changing ({ATTEMPTS} attempts): {last_error}"
    ))
}

/// Waits until `worker`'s assignment key is empty and its heartbeat has
/// applied that version.
fn wait_released(
    workers: &nats::kv::Store,
    assignments: &nats::kv::Store,
    bucket: &str,
    worker: &str,
    timeout: Duration,
) -> Result<bool, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let assignment = match live(assignments, worker)? {
            Some(e) => Some(
                wire::decode::<AssignmentRecord>(bucket, worker, &e.value)
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let beat = match live(workers, worker)? {
            Some(e) => Some(
                wire::decode::<WorkerRecord>(workers.bucket(), worker, &e.value)
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let released = match (&assignment, &beat) {
            (Some(a), Some(b)) => a.partitions.is_empty() && b.applied >= a.version,
            // No key: nothing was ever granted to it (or it left).
            (None, _) => true,
            // Gone from the workers bucket: it holds nothing.
            (Some(_), None) => true,
        };
        if released {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
