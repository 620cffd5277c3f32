//! `parti status`: the group at a glance, as a table or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use super::args::Args;
use super::connect::connect;
use super::snapshot::{self, Snapshot};

/// Runs `parti status`.
pub fn run(raw: &[String]) -> Result<(), String> {
    let args = Args::parse(raw, &[], &["--json"])?;
    if let Some(extra) = args.positional.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let group = args.group()?;
    let nc = connect(&args)?;
    let snap = snapshot::read(&nc, group)?;
    let out = if args.has("--json") {
        to_json(&snap).to_string()
    } else {
        to_text(&snap)
    };
    println!("{out}");
    nc.close();
    Ok(())
}

/// Partitions listed in more than one worker's record, with those workers:
/// the leader never publishes such a view, so any entry is worth a look (a
/// record left behind by hand, or a write from outside the library).
pub fn double_listed(s: &Snapshot) -> BTreeMap<String, Vec<String>> {
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for w in &s.workers {
        for p in w.assignment.iter().flat_map(|a| a.partitions.iter()) {
            holders.entry(p.id.clone()).or_default().push(w.id.clone());
        }
    }
    holders.retain(|_, ws| ws.len() > 1);
    holders
}

fn secs(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        json!((d.as_secs_f64() * 1000.0).round() / 1000.0)
    })
}

pub fn to_json(s: &Snapshot) -> Value {
    let workers: Vec<Value> = s
        .workers
        .iter()
        .map(|w| {
            json!({
                "id": w.id,
                "alive": w.record.is_some(),
                "heartbeat_age_s": secs(w.heartbeat_age),
                "applied_version": w.record.as_ref().map(|r| r.applied),
                "leaving": w.record.as_ref().is_some_and(|r| r.leaving),
                "drained": s.control.drained.contains(&w.id),
                "host": w.record.as_ref().map(|r| r.host.clone()),
                "pid": w.record.as_ref().map(|r| r.pid),
                "labels": w.record.as_ref().map(|r| r.labels.clone()),
                "capacity": w.record.as_ref().map(|r| r.capacity),
                "assignment_version": w.assignment.as_ref().map(|a| a.version),
                "partitions": w.assignment.as_ref().map_or(0, |a| a.partitions.len()),
            })
        })
        .collect();
    json!({
        "group": s.group,
        "leader": s.leader.as_ref().map(|(r, rev)| json!({
            "worker": r.worker,
            "epoch": r.effective_epoch(*rev),
        })),
        "assignment": s.meta.as_ref().map(|m| json!({
            "version": m.version,
            "epoch": m.epoch,
            "reason": m.reason.to_string(),
            "partitions": m.partitions,
            "unassigned": m.unassigned,
            "parked": m.parked,
        })),
        "workers": workers,
        "unassigned": s.unassigned(),
        "double_listed": double_listed(s)
            .into_iter()
            .map(|(p, ws)| json!({"partition": p, "workers": ws}))
            .collect::<Vec<_>>(),
        "drained": s.control.drained,
        "corrupt": s.corrupt.iter().map(|(b, k, r)| json!({"bucket": b, "key": k, "reason": r})).collect::<Vec<_>>(),
    })
}

/// `zone=a,pool=vip`, or `-` for none.
fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn to_text(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "group      {}", s.group);
    match &s.leader {
        Some((r, rev)) => {
            let _ = writeln!(
                out,
                "leader     {} (epoch {})",
                r.worker,
                r.effective_epoch(*rev)
            );
        }
        None => {
            let _ = writeln!(out, "leader     none");
        }
    }
    match &s.meta {
        Some(m) => {
            let _ = writeln!(
                out,
                "assignment v{} ({}), {} partitions, {} unassigned",
                m.version, m.reason, m.partitions, m.unassigned
            );
        }
        None => {
            let _ = writeln!(out, "assignment none published yet");
        }
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:>9} {:>8} {:>10} {:>8}  {:<20} NOTE",
        "WORKER", "HEARTBEAT", "APPLIED", "PARTITIONS", "CAPACITY", "LABELS"
    );
    for w in &s.workers {
        let age = w
            .heartbeat_age
            .map_or("-".to_string(), |d| format!("{:.1}s", d.as_secs_f64()));
        let applied = w
            .record
            .as_ref()
            .map_or("-".to_string(), |r| r.applied.to_string());
        let count = w.assignment.as_ref().map_or(0, |a| a.partitions.len());
        let mut note = match &w.record {
            None => "gone (assignment left behind)".to_string(),
            Some(r) if r.leaving => "leaving".to_string(),
            Some(r) if !r.host.is_empty() => format!("{} pid {}", r.host, r.pid),
            Some(r) => format!("pid {}", r.pid),
        };
        if s.control.drained.contains(&w.id) {
            note.insert_str(0, "drained; ");
        }
        let (capacity, labels) = w.record.as_ref().map_or(("-".into(), "-".into()), |r| {
            (r.capacity.to_string(), labels_text(&r.labels))
        });
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>8} {:>10} {:>8}  {:<20} {note}",
            w.id, age, applied, count, capacity, labels
        );
    }
    match s.unassigned() {
        Some(ids) if ids.is_empty() => {
            let _ = writeln!(out, "\nunassigned none");
        }
        Some(ids) => {
            let _ = writeln!(out, "\nunassigned {}", ids.join(" "));
        }
        None => {}
    }
    for (p, ws) in double_listed(s) {
        let _ = writeln!(
            out,
            "INCONSISTENT partition {p} is listed under {}",
            ws.join(" and ")
        );
    }
    if !s.control.drained.is_empty() {
        let names: Vec<&str> = s.control.drained.iter().map(String::as_str).collect();
        let _ = writeln!(out, "drained    {}", names.join(" "));
    }
    if let Some(m) = s.meta.as_ref().filter(|m| !m.parked.is_empty()) {
        let _ = writeln!(
            out,
            "parked     {} (no live worker carries their required labels)",
            m.parked.join(" ")
        );
    }
    for (b, k, r) in &s.corrupt {
        let _ = writeln!(out, "corrupt    {b}/{k}: {r}");
    }
    out.trim_end().to_string()
}
