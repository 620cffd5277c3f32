//! Serves a worker's health for Kubernetes-style probes:
//! `/ready` (200 while the worker holds an assignment), `/live` (200 while
//! the manager runs and its heartbeat thread makes progress, NATS reachable
//! or not: see `Health::is_live`) and `/health` (every field, as JSON).
//!
//! ```text
//! NATS_URL=127.0.0.1:4222 LISTEN=127.0.0.1:8080 cargo run --example health_endpoint
//! curl -i 127.0.0.1:8080/ready
//! ```
//! `RUN_FOR=SECONDS` stops it after that long (for CI); otherwise it runs
//! until killed.

#[path = "support/http.rs"]
mod http;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use parti::source::StaticSource;
use parti::{Config, Health, Manager, Partition};

fn secs(d: Option<Duration>) -> serde_json::Value {
    d.map_or(serde_json::Value::Null, |d| d.as_secs_f64().into())
}

fn to_json(h: &Health) -> String {
    serde_json::json!({
        "state": h.state.to_string(),
        "ready": h.is_ready(),
        "live": h.is_live(),
        "heartbeat_confirmed": h.is_heartbeat_confirmed(),
        "is_leader": h.is_leader,
        "worker_id": h.worker_id,
        "since_last_heartbeat_s": secs(h.since_last_heartbeat),
        "assignment_version": h.assignment_version,
        "partitions": h.partitions,
        "degraded_for_s": secs(h.degraded_since),
    })
    .to_string()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let manager = Arc::new(
        Manager::builder(parti::store::nats::connect(&url)?, "health-demo")
            // A short cold-start window so a lone demo worker is assigned
            // quickly; the default (30 s) waits for a whole fleet to boot.
            .config(Config {
                cold_start_window: Duration::from_secs(2),
                ..Config::default()
            })
            // A short cold-start window so a lone demo worker is assigned
            // quickly; the default (30 s) waits for a whole fleet to boot.
            .config(Config {
                cold_start_window: Duration::from_secs(2),
                ..Config::default()
            })
            .partitions(StaticSource::new(
                (0..8).map(|i| Partition::new(format!("p{i}"))),
            ))
            .start()?,
    );
    let listener = TcpListener::bind(&listen)?;
    println!(
        "{} serving /ready /live /health on http://{listen}",
        manager.worker_id()
    );
    let m = manager.clone();
    http::serve(listener, move |path| {
        let h = m.health();
        let probe = |ok: bool| {
            (
                if ok { 200 } else { 503 },
                "text/plain",
                format!("{}\n", h.state),
            )
        };
        match path {
            "/ready" => probe(h.is_ready()),
            "/live" => probe(h.is_live()),
            "/health" => (200, "application/json", to_json(&h)),
            _ => (404, "text/plain", "try /ready, /live or /health\n".into()),
        }
    });
    http::run_until_told();
    manager.stop()?;
    Ok(())
}
