//! The monitoring assets name only what parti really exports: every query of
//! `deploy/grafana/parti-dashboard.json` and every alert expression of
//! `deploy/prometheus/parti-alerts.yml` uses only series that
//! `examples/prometheus_metrics.rs` exports, and `docs/monitoring.md`
//! documents every one of them and every info, warn and error line the
//! library logs. No NATS needed: the example's own registration is called
//! directly.

#[allow(dead_code)] // the example's `main` and HTTP server are not used here
#[path = "../examples/prometheus_metrics.rs"]
mod example;

use std::collections::BTreeSet;
use std::time::Duration;

use parti::metrics::Metrics;
use parti::{RebalanceKind, State};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use serde_json::Value;

const DASHBOARD: &str = include_str!("../deploy/grafana/parti-dashboard.json");
const ALERTS: &str = include_str!("../deploy/prometheus/parti-alerts.yml");
const GUIDE: &str = include_str!("../docs/monitoring.md");

/// Sample names (`parti_rebalances_total`, `parti_kv_latency_seconds_bucket`,
/// …) the example's registry prints once every hook has been called.
fn exported_series() -> BTreeSet<String> {
    let mut registry = Registry::default();
    let exporter = example::Exporter::new(&mut registry);
    // One call of every hook, so that every labelled family has a child and
    // prints its samples.
    exporter.rebalance(RebalanceKind::Emergency);
    exporter.assignment_version(3);
    exporter.partitions_owned(2);
    exporter.leader(true);
    exporter.state(State::Stable);
    exporter.heartbeat_failure();
    exporter.kv_failure("parti-g-workers", "update");
    exporter.kv_latency("parti-g-workers", "update", Duration::from_millis(1));
    exporter.partitions_unowned(1);
    exporter.unowned_partition_seconds(0.5);
    exporter.handoff_latency(Duration::from_millis(40));
    exporter.store_incident();
    exporter.alert("degraded");
    let mut text = String::new();
    encode(&mut text, &registry).expect("encode the registry");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect()
}

/// The metric names a PromQL expression selects. Removes what is not a
/// metric name first (strings, label matchers, ranges, grouping clauses,
/// Grafana variables, numbers), then keeps the identifiers that are neither
/// functions (followed by `(`) nor operators.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // label_values(metric, label): only the first argument is a selector.
    let mut expr = expr.to_string();
    if let Some(rest) = expr.strip_prefix("label_values(") {
        let selector = rest.split(',').next().unwrap_or_default();
        expr = selector.to_string();
    }
    let mut out = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                skip_string(&mut chars);
                out.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while let Some(s) = chars.next() {
                    match s {
                        '"' => skip_string(&mut chars),
                        s if s == close => break,
                        _ => {}
                    }
                }
                out.push(' ');
            }
            '$' => {
                while chars
                    .peek()
                    .is_some_and(|s| s.is_ascii_alphanumeric() || *s == '_')
                {
                    chars.next();
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    const CLAUSES: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Operators, constants, and the aggregations (written before `by (…)`).
    const KEYWORDS: [&str; 20] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
    ];
    let tokens = tokenize(&out);
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let next = tokens.get(i + 1).map(String::as_str);
        if CLAUSES.contains(&t.as_str()) {
            // Skip the parenthesised label list of the clause.
            if next == Some("(") {
                while i < tokens.len() && tokens[i] != ")" {
                    i += 1;
                }
            }
        } else if is_identifier(t) && next != Some("(") && !KEYWORDS.contains(&t.as_str()) {
            names.insert(t.clone());
        }
        i += 1;
    }
    names
}

/// Skips a PromQL string literal up to its closing quote, escapes included.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(s) = chars.next() {
        match s {
            '\\' => {
                chars.next();
            }
            '"' => break,
            _ => {}
        }
    }
}

/// Identifiers and single punctuation characters.
fn tokenize(s: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.' {
            word.push(c);
        } else {
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

fn is_identifier(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && !t.contains('.')
}

/// Every `expr` of a panel target and every query of a templating variable.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, key: Option<&str>, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    walk(v, Some(k), out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, key, out)),
            Value::String(s) if matches!(key, Some("expr")) => out.push(s.clone()),
            Value::String(s) if key == Some("query") && s.starts_with("label_values(") => {
                out.push(s.clone())
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, None, &mut out);
    out
}

/// The `expr` of every rule: a one-line value, or a folded/literal block
/// (`>-`, `|`) made of the more indented lines after it.
fn alert_expressions(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('>') || value.starts_with('|') {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join(" "));
        } else {
            exprs.push(value.to_string());
        }
    }
    exprs
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("the dashboard is valid JSON")
}

#[test]
fn the_parser_finds_metric_names_and_only_them() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, op) (rate(parti_kv_latency_seconds_bucket{job=~"$job", op!="x{y}"}[$__rate_interval]))) > 0.5 and on (job) up"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["parti_kv_latency_seconds_bucket".into(), "up".into()])
    );
    assert_eq!(
        metric_names("label_values(parti_leader, job)"),
        BTreeSet::from(["parti_leader".into()])
    );
}

#[test]
fn every_dashboard_query_names_only_exported_series() {
    let exported = exported_series();
    let queries = dashboard_queries(&dashboard());
    assert!(queries.len() >= 10, "found only {} queries", queries.len());
    for q in &queries {
        let names = metric_names(q);
        assert!(!names.is_empty(), "query names no metric: {q}");
        for n in &names {
            assert!(
                exported.contains(n),
                "dashboard query uses {n}, which examples/prometheus_metrics.rs does not export \
                 (exports {exported:?}): {q}"
            );
        }
    }
}

#[test]
fn every_alert_expression_names_only_exported_series() {
    let exported = exported_series();
    let exprs = alert_expressions(ALERTS);
    let alerts = ALERTS
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert!(alerts > 0, "no alert rule found");
    assert_eq!(exprs.len(), alerts, "one expression per alert: {exprs:?}");
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "alert expression names no metric: {e}");
        for n in &names {
            assert!(
                exported.contains(n),
                "alert uses {n}, which examples/prometheus_metrics.rs does not export: {e}"
            );
        }
    }
}

#[test]
fn the_dashboard_imports_as_is() {
    let d = dashboard();
    assert!(d["title"].is_string() && d["uid"].is_string());
    assert!(
        d.get("__inputs").is_none(),
        "no import-time inputs: the data source is a variable"
    );
    let vars = d["templating"]["list"].as_array().expect("templating list");
    assert!(vars
        .iter()
        .any(|v| v["name"] == "datasource" && v["type"] == "datasource"));
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
    }
}

#[test]
fn the_guide_documents_every_exported_metric() {
    for name in exported_series() {
        // Histogram samples are documented under their family name.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        assert!(
            GUIDE.contains(&format!("`{family}`")),
            "docs/monitoring.md does not document `{family}`"
        );
    }
}

/// The format string of every `log::info!`, `log::warn!` and `log::error!`
/// in the library's sources (the CLI in `src/bin` logs its own way).
fn logged_formats() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("read src/") {
            let path = entry.expect("src entry").path();
            if path.is_dir() {
                if !path.ends_with("bin") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read a source file");
                for level in ["info", "warn", "error"] {
                    let call = format!("log::{level}!(");
                    for (at, _) in text.match_indices(&call) {
                        let rest = text[at + call.len()..].trim_start();
                        let literal = rest
                            .strip_prefix('"')
                            .and_then(|r| r.split_once('"'))
                            .map(|(lit, _)| lit.to_string())
                            .unwrap_or_else(|| {
                                panic!("{}: {call} without a literal", path.display())
                            });
                        let place = path
                            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                            .unwrap_or(&path);
                        out.push((format!("{}: {level}", place.display()), literal));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut out,
    );
    out
}

/// The literal pieces of a format string, between its `{…}` placeholders.
fn literal_pieces(format: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        pieces.push(&rest[..open]);
        rest = rest[open..].split_once('}').map_or("", |(_, r)| r);
    }
    pieces.push(rest);
    pieces
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .collect()
}

/// Whether `line` holds `pieces` in this order.
fn shows(line: &str, pieces: &[&str]) -> bool {
    let mut rest = line;
    pieces.iter().all(|p| match rest.find(p) {
        Some(at) => {
            rest = &rest[at + p.len()..];
            true
        }
        None => false,
    })
}

#[test]
fn the_guide_documents_every_log_line() {
    // The example lines of the guide's logging table: its code spans.
    let documented: Vec<&str> = GUIDE
        .lines()
        .filter(|l| {
            ["| info |", "| warn |", "| error |"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .flat_map(|l| l.split('`').skip(1).step_by(2))
        .collect();
    assert!(
        documented.len() > 20,
        "no logging table in docs/monitoring.md"
    );
    let formats = logged_formats();
    assert!(formats.len() > 20, "found only {} log calls", formats.len());
    let mut missing = Vec::new();
    for (place, format) in &formats {
        let pieces = literal_pieces(format);
        if !documented.iter().any(|line| shows(line, &pieces)) {
            missing.push(format!("{place}: \"{format}\""));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/monitoring.md's logging table lacks:\n{}",
        missing.join("\n")
    );
}
