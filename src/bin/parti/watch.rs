//! `parti watch`: one line per change in a group's buckets, live.
#![allow(deprecated)] // every item of the `nats` 0.26 crate is deprecated

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use parti::wire::{self, AssignmentRecord, LeaderRecord, MetaRecord, WorkerRecord};
use parti::BucketNames;
use serde_json::{json, Value};

use super::args::Args;
use super::connect::connect;

/// Which bucket an entry came from.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Workers,
    Leader,
    Assignments,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Workers => "workers",
            Kind::Leader => "leader",
            Kind::Assignments => "assignments",
        }
    }
}

/// Runs `parti watch` until killed.
pub fn run(raw: &[String]) -> Result<(), String> {
    let args = Args::parse(raw, &[], &["--json", "--heartbeats"])?;
    if let Some(extra) = args.positional.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let group = args.group()?;
    let names = BucketNames::for_group(group).map_err(|e| e.to_string())?;
    let nc = connect(&args)?;
    let js = nats::jetstream::new(nc.clone());
    let (tx, rx) = crossbeam_channel::unbounded();
    for (kind, bucket) in [
        (Kind::Workers, &names.workers),
        (Kind::Leader, &names.leader),
        (Kind::Assignments, &names.assignments),
    ] {
        let store = js
            .key_value(bucket)
            .map_err(|e| format!("group {group}: cannot open bucket {bucket}: {e}"))?;
        let watch = store
            .watch_all()
            .map_err(|e| format!("watching {bucket}: {e}"))?;
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("watch-{}", kind.name()))
            .spawn(move || {
                for entry in watch {
                    if tx.send((kind, entry)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start a watch thread: {e}"))?;
    }
    drop(tx);
    let mut filter = Filter {
        every_beat: args.has("--heartbeats"),
        last: BTreeMap::new(),
    };
    let json_out = args.has("--json");
    let mut stdout = std::io::stdout().lock();
    for (kind, entry) in rx.iter() {
        let Some(event) = filter.describe(kind, &entry) else {
            continue;
        };
        let line = if json_out {
            event.to_string()
        } else {
            text(&event)
        };
        // A closed pipe (e.g. `| head`) ends the command quietly.
        if writeln!(stdout, "{line}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    Ok(())
}

/// Drops heartbeats and lease renewals that change nothing but their
/// counters, unless every beat is wanted.
struct Filter {
    every_beat: bool,
    last: BTreeMap<(Kind, String), Value>,
}

impl Filter {
    fn describe(&mut self, kind: Kind, entry: &nats::kv::Entry) -> Option<Value> {
        let op = match entry.operation {
            nats::kv::Operation::Put => "put",
            nats::kv::Operation::Delete => "delete",
            nats::kv::Operation::Purge => "purge",
        };
        let detail = if op == "put" {
            detail(kind, entry)
        } else {
            Value::Null
        };
        let slot = (kind, entry.key.clone());
        if op == "put" && !self.every_beat {
            let essence = essence(&detail);
            if self.last.get(&slot) == Some(&essence) {
                return None;
            }
            self.last.insert(slot, essence);
        } else {
            self.last.remove(&slot);
        }
        Some(json!({
            "time": utc_now(),
            "bucket": kind.name(),
            "op": op,
            "key": entry.key,
            "revision": entry.revision,
            "detail": detail,
        }))
    }
}

/// A record without the fields every heartbeat or renewal changes.
fn essence(detail: &Value) -> Value {
    let mut v = detail.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("seq");
    }
    v
}

fn detail(kind: Kind, entry: &nats::kv::Entry) -> Value {
    let (bucket, key, bytes) = (
        entry.bucket.as_str(),
        entry.key.as_str(),
        entry.value.as_slice(),
    );
    let decoded = match kind {
        Kind::Workers if key.starts_with('_') => Ok(json!({"control": true})),
        Kind::Workers => wire::decode::<WorkerRecord>(bucket, key, bytes).map(|r| {
            json!({"instance": r.instance, "seq": r.seq, "applied": r.applied, "leaving": r.leaving})
        }),
        Kind::Leader => wire::decode::<LeaderRecord>(bucket, key, bytes)
            .map(|r| json!({"worker": r.worker, "epoch": r.effective_epoch(entry.revision)})),
        Kind::Assignments if key == "_meta" => wire::decode::<MetaRecord>(bucket, key, bytes).map(|m| {
            json!({"version": m.version, "epoch": m.epoch, "reason": m.reason.to_string(),
                   "leader": m.leader, "unassigned": m.unassigned})
        }),
        Kind::Assignments if key == wire::CONTROL_KEY => {
            wire::decode::<wire::ControlRecord>(bucket, key, bytes)
                .map(|c| json!({"drained": c.drained, "rebalance_requests": c.rebalance}))
        }
        Kind::Assignments => wire::decode::<AssignmentRecord>(bucket, key, bytes).map(|a| {
            json!({"version": a.version, "epoch": a.epoch, "reason": a.reason.to_string(),
                   "partitions": a.partitions.len()})
        }),
    };
    decoded.unwrap_or_else(|e| json!({"corrupt": e.to_string()}))
}

fn text(event: &Value) -> String {
    let mut line = format!(
        "{} {:<11} {:<6} {}",
        event["time"].as_str().unwrap_or(""),
        event["bucket"].as_str().unwrap_or(""),
        event["op"].as_str().unwrap_or(""),
        event["key"].as_str().unwrap_or(""),
    );
    if let Some(fields) = event["detail"].as_object() {
        for (k, v) in fields {
            line.push_str(&format!(
                " {k}={}",
                v.as_str().map_or(v.to_string(), String::from)
            ));
        }
    }
    line
}

/// `HH:MM:SS.mmm` in UTC.
fn utc_now() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}
