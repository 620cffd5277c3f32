//! `parti doctor`: checks a group's buckets and records and names every
//! problem; exits non-zero when it finds one. Writes nothing.
//!
//! - Buckets: present; one value per key; the subjects parti uses; a max age
//!   on the workers and leader buckets and none on the assignments and
//!   source buckets; the same replica count everywhere (`--replicas N`: that
//!   count); every cluster replica current and online.
//! - TTLs against the workers' configuration, given as the workers' own
//!   `--set FIELD=DURATION` flags: the workers bucket's max age is
//!   `worker_id_ttl`, the leader bucket's `election_ttl`, the configuration
//!   is valid, and no live worker's heartbeat is older than `heartbeat_ttl`
//!   (without `--set`, the defaults' `heartbeat_ttl`).
//! - Records: undecodable values, a partition listed under two workers, an
//!   assignment of a worker that is not registered, a lease held by one, no
//!   lease at all, KV-source partitions nobody holds, a summary (`_meta`)
//!   that disagrees with the assignments, workers behind the latest
//!   version.
//! - Clocks: workers' clock skew is not derivable (the records carry no
//!   wall-clock times; parti's timing uses monotonic clocks and server
//!   timestamps), so only heartbeat ages (server time against this machine's
//!   clock) are checked.
//! - Permissions (`--check-permissions`): the user doctor connects as holds
//!   every permission a worker of the group needs (for setups where workers
//!   and operators share a user; doctor's own reads, like `parti status`,
//!   need replies on `_INBOX.>`, which a worker's minimal permissions do not
//!   grant).
#![allow(deprecated)] // every item of the `nats` 0.26 crate is deprecated

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use parti::store::nats::check_permissions;
use parti::{BucketNames, Config};
use serde_json::{json, Value};

use super::args::Args;
use super::buckets;
use super::connect::connect;
use super::settings::config_from;
use super::snapshot::{self, Snapshot};

/// A problem fails the check; a warning does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Severity {
    Problem,
    Warning,
}

struct Finding {
    severity: Severity,
    check: &'static str,
    message: String,
}

#[derive(Default)]
struct Report {
    findings: Vec<Finding>,
}

impl Report {
    fn problem(&mut self, check: &'static str, message: String) {
        self.push(Severity::Problem, check, message);
    }

    fn warning(&mut self, check: &'static str, message: String) {
        self.push(Severity::Warning, check, message);
    }

    fn push(&mut self, severity: Severity, check: &'static str, message: String) {
        self.findings.push(Finding {
            severity,
            check,
            message,
        });
    }

    fn healthy(&self) -> bool {
        self.findings
            .iter()
            .all(|f| f.severity != Severity::Problem)
    }
}

/// What a bucket's max age must be.
enum Age {
    /// Some max age; exactly this one when the workers' config is known.
    Required(&'static str, Option<Duration>),
    /// None: the keys must never expire.
    Never,
}

/// Runs `parti doctor`; `Ok(false)` when it found a problem.
pub fn run(raw: &[String]) -> Result<bool, String> {
    let args = Args::parse(
        raw,
        &["--set", "--replicas"],
        &["--json", "--check-permissions"],
    )?;
    if let Some(extra) = args.positional.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let group = args.group()?;
    let sets = args.values("--set");
    let config = config_from(sets)?;
    let given = (!sets.is_empty()).then_some(&config);
    let replicas: Option<usize> = match args.value("--replicas") {
        Some(r) => Some(r.parse().map_err(|_| format!("bad --replicas {r:?}"))?),
        None => None,
    };
    let nc = connect(&args)?;
    let result = examine(&nc, group, given, replicas, args.has("--check-permissions"));
    nc.close();
    let report = result?;
    if args.has("--json") {
        println!("{}", to_json(group, &report));
    } else {
        println!("{}", to_text(group, &report));
    }
    Ok(report.healthy())
}

fn examine(
    nc: &nats::Connection,
    group: &str,
    config: Option<&Config>,
    replicas: Option<usize>,
    permissions: bool,
) -> Result<Report, String> {
    let names = BucketNames::for_group(group).map_err(|e| e.to_string())?;
    let mut report = Report::default();
    if let Some(c) = config {
        if let Err(e) = c.validate() {
            report.problem(
                "config",
                format!("the workers' configuration is invalid: {e}"),
            );
        }
    }
    // The workers run with the fields left at their default derived from
    // the ones set: compare the buckets with those.
    let resolved = config.and_then(|c| c.resolved().ok());
    let config = resolved.as_ref().or(config);
    let source = parti::source::KvSource::bucket_name(group).map_err(|e| e.to_string())?;
    let expected = [
        (
            &names.workers,
            Age::Required("worker_id_ttl", config.map(|c| c.worker_id_ttl)),
            true,
        ),
        (
            &names.leader,
            Age::Required("election_ttl", config.map(|c| c.election_ttl)),
            true,
        ),
        (&names.assignments, Age::Never, true),
        (&source, Age::Never, false),
    ];
    let mut counts = BTreeMap::new();
    for (bucket, age, required) in &expected {
        match buckets::stream_info(nc, bucket)? {
            Some(info) => {
                counts.insert(bucket.to_string(), buckets::replicas(&info));
                check_bucket(&mut report, bucket, &info, age);
            }
            None if *required => {
                report.problem("bucket", format!("bucket {bucket} does not exist"))
            }
            None => {}
        }
    }
    check_replicas(&mut report, &counts, replicas);
    if !counts.contains_key(&names.workers) {
        // Nothing else to read: the group has never run.
        return Ok(report);
    }
    let snap = snapshot::read(nc, group)?;
    let heartbeat_ttl = config.map_or(Config::default().heartbeat_ttl, |c| c.heartbeat_ttl);
    check_records(&mut report, &snap, heartbeat_ttl);
    if permissions {
        if let Err(e) = check_permissions(nc, group, Duration::from_secs(1)) {
            report.problem("permissions", format!("this user cannot run a worker: {e}"));
        }
    }
    Ok(report)
}

fn check_bucket(report: &mut Report, bucket: &str, info: &Value, age: &Age) {
    let config = &info["config"];
    let history = config["max_msgs_per_subject"].as_i64().unwrap_or(-1);
    if history != 1 {
        report.problem(
            "bucket",
            format!("bucket {bucket} keeps {history} values per key (parti creates it with 1)"),
        );
    }
    let subject = format!("$KV.{bucket}.>");
    let subjects: Vec<&str> = config["subjects"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if subjects != [subject.as_str()] {
        report.problem(
            "bucket",
            format!("bucket {bucket} has subjects {subjects:?}, wanted [{subject:?}]"),
        );
    }
    match (age, buckets::max_age(info)) {
        (Age::Required(field, _), None) => report.problem(
            "ttl",
            format!("bucket {bucket} has no max age: its keys never expire (it should be {field})"),
        ),
        (Age::Required(field, Some(want)), Some(have)) if have != *want => report.problem(
            "ttl",
            format!(
                "bucket {bucket} expires keys after {have:?}, but the workers' {field} is {want:?}"
            ),
        ),
        (Age::Never, Some(have)) => report.problem(
            "ttl",
            format!("bucket {bucket} expires keys after {have:?}: its records must never expire"),
        ),
        _ => {}
    }
    for peer in info["cluster"]["replicas"].as_array().into_iter().flatten() {
        let name = peer["name"].as_str().unwrap_or("?");
        if peer["offline"].as_bool() == Some(true) {
            report.problem(
                "replicas",
                format!("bucket {bucket}: replica on {name} is offline"),
            );
        } else if peer["current"].as_bool() == Some(false) {
            report.warning(
                "replicas",
                format!("bucket {bucket}: replica on {name} is lagging"),
            );
        }
    }
}

fn check_replicas(report: &mut Report, counts: &BTreeMap<String, usize>, want: Option<usize>) {
    for (bucket, have) in counts {
        match want {
            Some(want) if *have != want => report.problem(
                "replicas",
                format!("bucket {bucket} has {have} replicas, wanted {want}"),
            ),
            _ => {}
        }
    }
    let distinct: std::collections::BTreeSet<_> = counts.values().collect();
    if want.is_none() && distinct.len() > 1 {
        report.problem(
            "replicas",
            format!("the group's buckets have different replica counts: {counts:?}"),
        );
    }
}

fn check_records(report: &mut Report, snap: &Snapshot, heartbeat_ttl: Duration) {
    for (bucket, key, reason) in &snap.corrupt {
        report.problem(
            "records",
            format!("{bucket}/{key} cannot be decoded: {reason}"),
        );
    }
    let mut holders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for w in &snap.workers {
        let Some(a) = &w.assignment else { continue };
        for p in &a.partitions {
            holders
                .entry(p.id.as_str())
                .or_default()
                .push(w.id.as_str());
        }
        match &w.record {
            None if !a.partitions.is_empty() => report.problem(
                "stale",
                format!(
                    "stale assignment: {} holds {} partitions but is not registered",
                    w.id,
                    a.partitions.len()
                ),
            ),
            Some(r) if r.instance != a.instance => report.warning(
                "stale",
                format!(
                    "the assignment of {} is addressed to another instance of it",
                    w.id
                ),
            ),
            _ => {}
        }
    }
    for (partition, workers) in holders.iter().filter(|(_, ws)| ws.len() > 1) {
        report.problem(
            "ownership",
            format!(
                "partition {partition} is listed under {} workers: {}",
                workers.len(),
                workers.join(", ")
            ),
        );
    }
    let live: Vec<_> = snap.workers.iter().filter(|w| w.record.is_some()).collect();
    for w in &live {
        match w.heartbeat_age {
            Some(age) if age > heartbeat_ttl => report.problem(
                "stale",
                format!(
                    "worker {} last heartbeat {:.1} s ago (heartbeat_ttl {heartbeat_ttl:?})",
                    w.id,
                    age.as_secs_f64()
                ),
            ),
            _ => {}
        }
    }
    match &snap.leader {
        Some((lease, _)) if !live.iter().any(|w| w.id == lease.worker) => report.problem(
            "leader",
            format!(
                "the lease is held by {}, which is not registered",
                lease.worker
            ),
        ),
        None if !live.is_empty() => report.problem("leader", "no leader holds the lease".into()),
        _ => {}
    }
    if !live.is_empty() {
        if let Some(ids) = snap.unassigned().filter(|ids| !ids.is_empty()) {
            report.problem(
                "ownership",
                format!(
                    "{} partitions of the KV source are held by nobody: {}",
                    ids.len(),
                    ids.join(" ")
                ),
            );
        }
    }
    let Some(meta) = &snap.meta else {
        if !live.is_empty() {
            report.warning("meta", "no assignment has been published yet".into());
        }
        return;
    };
    let counts: BTreeMap<String, usize> = snap
        .workers
        .iter()
        .filter_map(|w| Some((w.id.clone(), w.assignment.as_ref()?.partitions.len())))
        .collect();
    if counts != meta.workers && meta.moving.is_empty() {
        report.warning(
            "meta",
            format!(
                "the summary (_meta) counts {:?}, the assignments hold {counts:?}",
                meta.workers
            ),
        );
    }
    for w in &live {
        if let Some(r) = &w.record {
            if r.applied < meta.version && !r.leaving {
                report.warning(
                    "version",
                    format!(
                        "worker {} has applied v{}, the latest is v{}",
                        w.id, r.applied, meta.version
                    ),
                );
            }
        }
    }
}

fn to_json(group: &str, r: &Report) -> Value {
    json!({
        "group": group,
        "healthy": r.healthy(),
        "findings": r.findings.iter().map(|f| json!({
            "severity": match f.severity { Severity::Problem => "problem", Severity::Warning => "warning" },
            "check": f.check,
            "message": f.message,
        })).collect::<Vec<_>>(),
        "clock_skew": "not derivable: records carry no wall-clock times; heartbeat ages use the server's timestamps",
    })
}

fn to_text(group: &str, r: &Report) -> String {
    let mut out = String::new();
    for f in &r.findings {
        let tag = match f.severity {
            Severity::Problem => "PROBLEM",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{tag:<8} {:<10} {}", f.check, f.message);
    }
    let problems = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .count();
    let _ = write!(
        out,
        "group {group}: {}",
        if problems == 0 {
            "healthy".to_string()
        } else {
            format!("{problems} problems")
        }
    );
    out
}
