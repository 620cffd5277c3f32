//! `parti partitions add|remove|list`: edit a group's KV partition source.

use std::time::Duration;

use parti::source::KvSource;
use parti::store::nats::NatsBackend;
use parti::store::BucketConfig;
use parti::Partition;

use super::args::Args;
use super::connect::connect;

/// How long one KV operation may take.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `parti partitions ...`.
pub fn run(raw: &[String]) -> Result<(), String> {
    let args = Args::parse(raw, &["--weight", "--replicas"], &["--json"])?;
    let group = args.group()?;
    let (action, ids) = args
        .positional
        .split_first()
        .ok_or("partitions wants add, remove or list")?;
    let weight: u32 = match args.value("--weight") {
        Some(w) => w.parse().map_err(|_| format!("bad --weight {w:?}"))?,
        None => 1,
    };
    let replicas: usize = match args.value("--replicas") {
        Some(r) => r.parse().map_err(|_| format!("bad --replicas {r:?}"))?,
        None => 1,
    };
    let nc = connect(&args)?;
    let backend = NatsBackend::new(nc.clone(), OP_TIMEOUT);
    let mut config = BucketConfig::new(
        KvSource::bucket_name(group).map_err(|e| e.to_string())?,
        None,
    );
    config.replicas = replicas;
    let source = KvSource::open_bucket(&backend, &config).map_err(|e| e.to_string())?;
    let result = match action.as_str() {
        "add" | "remove" if ids.is_empty() => {
            Err(format!("partitions {action} wants at least one ID"))
        }
        "add" => ids
            .iter()
            .try_for_each(|id| source.add(&Partition::with_weight(id.as_str(), weight)))
            .map_err(|e| e.to_string()),
        "remove" => ids
            .iter()
            .try_for_each(|id| source.remove(id))
            .map_err(|e| e.to_string()),
        "list" => list(&source, args.has("--json")),
        other => Err(format!(
            "unknown partitions action {other:?} (add, remove, list)"
        )),
    };
    nc.close();
    result
}

fn list(source: &KvSource, json: bool) -> Result<(), String> {
    let partitions = source.list().map_err(|e| e.to_string())?;
    if json {
        let items: Vec<_> = partitions
            .iter()
            .map(|p| serde_json::json!({"id": p.id(), "weight": p.weight()}))
            .collect();
        println!("{}", serde_json::Value::Array(items));
    } else {
        for p in partitions {
            println!("{}\t{}", p.id(), p.weight());
        }
    }
    Ok(())
}
