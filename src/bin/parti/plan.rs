//! `parti plan`: what a change of the group's workers would move, computed
//! with the group's strategy from the live state. Writes nothing.
//!
//! The leader computes a rebalance as `strategy.assign(live workers,
//! partitions, placement in force)`; so does this, over the published
//! assignments, the registered workers (minus `--remove`, plus `--add N`
//! newcomers under the IDs they would claim: the lowest free
//! `<prefix>-<n>` without a published assignment) and the partitions (the group's KV source, else those in
//! the assignments). It cannot know an affinity the leader keeps for a
//! worker that left and rejoins under its old ID, nor a custom strategy:
//! name the group's with `--strategy` / `--epsilon`.
#![allow(deprecated)] // every item of the `nats` 0.26 crate is deprecated

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use parti::source::KvSource;
use parti::store::nats::NatsBackend;
use parti::store::{BucketConfig, KvBackend};
use parti::strategy::{AssignmentStrategy, BoundedLoad, ConsistentHash, RoundRobin};
use parti::{BucketNames, Config, Partition, Placement};
use serde_json::{json, Value};

use super::args::Args;
use super::buckets;
use super::connect::connect;
use super::snapshot::{self, Snapshot};

/// How long one KV operation may take.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// One partition changing hands (`from` is `None` for an unowned one).
#[derive(Debug, PartialEq, Eq)]
pub struct Move {
    pub partition: String,
    pub from: Option<String>,
    pub to: String,
}

/// The outcome of a plan.
pub struct Plan {
    pub strategy: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub placement: Placement,
    pub moves: Vec<Move>,
    pub warnings: Vec<String>,
}

/// Runs `parti plan`.
pub fn run(raw: &[String]) -> Result<(), String> {
    let args = Args::parse(
        raw,
        &["--add", "--prefix", "--strategy", "--epsilon"],
        &["--json", "--remove"],
    )?;
    let group = args.group()?;
    let add: usize = match args.value("--add") {
        Some(n) => n.parse().map_err(|_| format!("bad --add {n:?}"))?,
        None => 0,
    };
    let removed = if args.has("--remove") {
        if args.positional.is_empty() {
            return Err("--remove wants at least one worker ID".into());
        }
        args.positional.clone()
    } else if let Some(extra) = args.positional.first() {
        return Err(format!(
            "unexpected argument {extra:?} (did you mean --remove?)"
        ));
    } else {
        Vec::new()
    };
    let (name, strategy) = strategy(args.value("--strategy"), args.value("--epsilon"))?;
    let prefix = args
        .value("--prefix")
        .map_or_else(|| Config::default().worker_id_prefix, str::to_string);
    let nc = connect(&args)?;
    let result = snapshot::read(&nc, group).and_then(|snap| {
        let partitions = partitions(&nc, group, &snap)?;
        compute(&snap, partitions, add, &removed, &prefix, &name, &*strategy)
    });
    nc.close();
    let plan = result?;
    if args.has("--json") {
        println!("{}", to_json(group, &plan));
    } else {
        println!("{}", to_text(group, &plan));
    }
    Ok(())
}

fn strategy(
    name: Option<&str>,
    epsilon: Option<&str>,
) -> Result<(String, Box<dyn AssignmentStrategy>), String> {
    let name = name.unwrap_or("bounded-load");
    let strategy: Box<dyn AssignmentStrategy> = match (name, epsilon) {
        ("bounded-load", None) => Box::new(BoundedLoad::default()),
        ("bounded-load", Some(e)) => Box::new(BoundedLoad::with_epsilon(
            e.parse().map_err(|_| format!("bad --epsilon {e:?}"))?,
        )),
        (_, Some(_)) => return Err("--epsilon goes with --strategy bounded-load".into()),
        ("consistent-hash", None) => Box::new(ConsistentHash::default()),
        ("round-robin", None) => Box::new(RoundRobin),
        (other, None) => {
            return Err(format!(
                "unknown strategy {other:?} (bounded-load, consistent-hash, round-robin)"
            ))
        }
    };
    Ok((name.to_string(), strategy))
}

/// The group's partitions: its KV source when it has one, else every
/// partition of the published assignments.
fn partitions(
    nc: &nats::Connection,
    group: &str,
    snap: &Snapshot,
) -> Result<(Vec<Partition>, Option<String>), String> {
    if snap.source.is_some() {
        let bucket = KvSource::bucket_name(group).map_err(|e| e.to_string())?;
        // Opened with its own settings, so nothing is created or refused.
        let mut config = BucketConfig::new(bucket.clone(), None);
        if let Some(info) = buckets::stream_info(nc, &bucket)? {
            config.replicas = buckets::replicas(&info);
            config.max_age = buckets::max_age(&info);
        }
        let backend = NatsBackend::new(nc.clone(), OP_TIMEOUT);
        let store = backend.open(&config).map_err(|e| e.to_string())?;
        let list = KvSource::new(Arc::clone(&store))
            .list()
            .map_err(|e| e.to_string())?;
        return Ok((list, None));
    }
    let mut seen = BTreeMap::new();
    for a in snap.workers.iter().filter_map(|w| w.assignment.as_ref()) {
        for p in &a.partitions {
            seen.entry(p.id.clone())
                .or_insert_with(|| Partition::with_weight(p.id.as_str(), p.weight));
        }
    }
    let unassigned = snap.meta.as_ref().map_or(0, |m| m.unassigned);
    let warning = (unassigned > 0).then(|| {
        format!(
            "{unassigned} partitions are unassigned and the group has no KV source: they are left out"
        )
    });
    Ok((seen.into_values().collect(), warning))
}

/// `<prefix>-<n>` → `n`, as worker IDs are numbered.
fn number(prefix: &str, id: &str) -> Option<u32> {
    let rest = id.strip_prefix(prefix)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok()
}

fn compute(
    snap: &Snapshot,
    (partitions, warning): (Vec<Partition>, Option<String>),
    add: usize,
    removed: &[String],
    prefix: &str,
    name: &str,
    strategy: &dyn AssignmentStrategy,
) -> Result<Plan, String> {
    let mut warnings: Vec<String> = warning.into_iter().collect();
    let before: Vec<String> = snap
        .workers
        .iter()
        .filter(|w| w.record.as_ref().is_some_and(|r| !r.leaving))
        .map(|w| w.id.clone())
        .collect();
    if let Some(unknown) = removed.iter().find(|w| !before.contains(w)) {
        return Err(format!("{unknown} is not a live worker of the group"));
    }
    if snap.meta.as_ref().is_some_and(|m| !m.moving.is_empty()) {
        warnings.push(
            "a handoff is in progress: the plan starts from the published assignments".into(),
        );
    }
    // The IDs newcomers would claim: the lowest numbers no key of the
    // workers bucket holds (a corrupt record holds its key too) and no
    // published assignment names.
    let workers_bucket = BucketNames::for_group(&snap.group)
        .map_err(|e| e.to_string())?
        .workers;
    let taken: BTreeSet<u32> = snap
        .workers
        .iter()
        .filter(|w| w.record.is_some())
        .map(|w| w.id.as_str())
        .chain(
            snap.corrupt
                .iter()
                .filter(|(b, _, _)| *b == workers_bucket)
                .map(|(_, k, _)| k.as_str()),
        )
        .filter_map(|id| number(prefix, id))
        .collect();
    // As the claim does, IDs with a published assignment (a worker gone
    // whose record is not cleared yet) come after the others.
    let assigned: BTreeSet<u32> = snap
        .workers
        .iter()
        .filter(|w| w.assignment.is_some())
        .filter_map(|w| number(prefix, &w.id))
        .collect();
    let added: Vec<String> = (0..u32::MAX)
        .filter(|n| !taken.contains(n) && !assigned.contains(n))
        .take(add)
        .map(|n| format!("{prefix}-{n}"))
        .collect();
    let mut after: Vec<String> = before
        .iter()
        .filter(|w| !removed.contains(w))
        .cloned()
        .chain(added.iter().cloned())
        .collect();
    after.sort();
    let previous: Placement = snap
        .workers
        .iter()
        .filter_map(|w| {
            let a = w.assignment.as_ref()?;
            let ps = a
                .partitions
                .iter()
                .map(|p| Partition::with_weight(p.id.as_str(), p.weight))
                .collect();
            Some((w.id.clone(), ps))
        })
        .collect();
    let placement = if after.is_empty() {
        warnings.push("no worker would be left: every partition would be unowned".into());
        Placement::new()
    } else {
        strategy
            .assign(&after, &partitions, &previous)
            .map_err(|e| format!("the strategy failed: {e}"))?
    };
    let owner_before: BTreeMap<&str, &str> = previous
        .iter()
        .flat_map(|(w, ps)| ps.iter().map(move |p| (p.id(), w.as_str())))
        .collect();
    let mut moves: Vec<Move> = placement
        .iter()
        .flat_map(|(w, ps)| ps.iter().map(move |p| (p.id(), w)))
        .filter(|(id, w)| owner_before.get(id) != Some(&w.as_str()))
        .map(|(id, w)| Move {
            partition: id.to_string(),
            from: owner_before.get(id).map(|s| s.to_string()),
            to: w.clone(),
        })
        .collect();
    moves.sort_by(|a, b| a.partition.cmp(&b.partition));
    Ok(Plan {
        strategy: name.to_string(),
        before,
        after,
        added,
        removed: removed.to_vec(),
        placement,
        moves,
        warnings,
    })
}

fn to_json(group: &str, p: &Plan) -> Value {
    let placement: BTreeMap<&str, Vec<&str>> = p
        .placement
        .iter()
        .map(|(w, ps)| (w.as_str(), ps.iter().map(Partition::id).collect()))
        .collect();
    json!({
        "group": group,
        "strategy": p.strategy,
        "workers_before": p.before,
        "workers_after": p.after,
        "added": p.added,
        "removed": p.removed,
        "moved": p.moves.len(),
        "moves": p.moves.iter().map(|m| json!({
            "partition": m.partition,
            "from": m.from,
            "to": m.to,
        })).collect::<Vec<_>>(),
        "placement": placement,
        "warnings": p.warnings,
    })
}

fn to_text(group: &str, p: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "group      {group} (strategy {})", p.strategy);
    let _ = writeln!(
        out,
        "workers    {} -> {} (adding {}, removing {})",
        p.before.len(),
        p.after.len(),
        if p.added.is_empty() {
            "none".into()
        } else {
            p.added.join(" ")
        },
        if p.removed.is_empty() {
            "none".into()
        } else {
            p.removed.join(" ")
        },
    );
    let _ = writeln!(out, "moves      {}", p.moves.len());
    for m in &p.moves {
        let from = m.from.as_deref().unwrap_or("(unowned)");
        let _ = writeln!(out, "  {:<24} {from} -> {}", m.partition, m.to);
    }
    let _ = writeln!(out, "\nload after");
    for (w, ps) in &p.placement {
        let _ = writeln!(out, "  {w:<24} {}", ps.len());
    }
    for w in &p.warnings {
        let _ = writeln!(out, "warning    {w}");
    }
    out.trim_end().to_string()
}
