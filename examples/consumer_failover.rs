//! What a scale-up, a graceful stop and a crash cost a group's consumption:
//! worker processes run `JetStreamConsumer` (or `SubjectSubscriber`) beside a
//! `Manager` while a steady flow of numbered messages goes to the
//! partitions. Prints, per phase and separately for the partitions that
//! moved and those that did not: messages published, lost, handled twice
//! (split by cause) and the delivery latency (publish to handler call)
//! p50 / p99 / max.
//!
//! ```text
//! cargo run --release --example consumer_failover -- [fast|defaults] [jetstream|core|both] [PARTITIONS] [RATE]
//! ```
//! `fast`: heartbeat 200 ms, TTL 800 ms, emergency grace 300 ms (the other
//! windows short too); `defaults`: parti's defaults (about three minutes per
//! helper). Default: `fast both 48 200` (48 partitions, 200 messages/s).
//! Starts its own nats-server (`NATS_SERVER_BIN`, else `nats-server` on
//! `PATH`) on 127.0.0.1 for each helper. The workers are this binary, run
//! with `worker` as first argument.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

// The scenario machinery is shared with `tests/subscription_failover.rs`.
#[path = "../tests/subs_common/child.rs"]
mod child;
#[path = "../tests/subs_common/flow.rs"]
mod flow;
#[path = "../tests/subs_common/scenario.rs"]
mod scenario;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use child::{unix_micros, Helper, WorkerSpec, SPEC_VAR};
use flow::{Outcome, Publisher};
use scenario::{create_stream, moved, table, Group, Phase};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        let spec: WorkerSpec = serde_json::from_str(&std::env::var(SPEC_VAR)?)?;
        return child::run_worker(&spec);
    }
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let profile = arg(0, "fast");
    let helpers = match arg(1, "both").as_str() {
        "jetstream" => vec![Helper::JetStream],
        "core" => vec![Helper::Core],
        "both" => vec![Helper::JetStream, Helper::Core],
        other => return Err(format!("unknown helper {other:?}: jetstream, core or both").into()),
    };
    let partitions: usize = arg(2, "48").parse()?;
    let rate: u64 = arg(3, "200").parse()?;
    for helper in helpers {
        run(&profile, helper, partitions, rate)?;
    }
    Ok(())
}

fn run(profile: &str, helper: Helper, partitions: usize, rate: u64) -> Res<()> {
    let server = support::NatsServer::start();
    let url = server.url();
    create_stream(&url)?;
    let spec = match profile {
        "fast" => WorkerSpec::fast(&url, "failover", partitions, helper),
        "defaults" => WorkerSpec::defaults(&url, "failover", partitions, helper),
        other => return Err(format!("unknown profile {other:?}: fast or defaults").into()),
    };
    let config = spec.config();
    // Long enough for any settling at this profile (cold start, planned
    // window, cooldown, failure detection).
    let settle = config.cold_start_window
        + config.planned_scale_window
        + config.rebalance_cooldown
        + config.heartbeat_ttl
        + config.emergency_grace
        + Duration::from_secs(10);
    let steady = (rate as usize).max(1) * 2; // about 2 s of flow
    let exe = std::env::current_exe()?.to_string_lossy().to_string();
    let mut g = Group::new(spec, exe, vec!["worker".into()]);
    for _ in 0..3 {
        g.spawn()?;
    }
    if !g.wait_settled(settle) {
        return Err("the first 3 workers never settled".into());
    }
    let publisher = Publisher::start(&g.spec, rate, Duration::from_secs(600))?;
    let mut phases = Vec::new();
    let mut phase = Phase::start("steady, 3 workers");
    g.wait_handled(steady, settle);

    let mut next = Phase::start("scale-up 3 -> 5");
    phase.to = next.from;
    phases.push(phase);
    let mut phase = next;
    let before = g.owners();
    g.spawn()?;
    g.spawn()?;
    // Both newcomers may not join in the same rebalance: wait until nothing
    // has moved for a planned window, a cooldown and a heartbeat TTL.
    let quiet = config.planned_scale_window + config.rebalance_cooldown + config.heartbeat_ttl;
    if !g.wait_balanced(settle) || !g.wait_still(quiet, settle + quiet) {
        return Err("scale-up did not settle".into());
    }
    phase.moved = moved(&before, &g.owners());
    g.wait_handled(steady, settle);

    next = Phase::start("graceful stop 5 -> 4");
    phase.to = next.from;
    phases.push(phase);
    let mut phase = next;
    let before = g.owners();
    let leaving = g.busiest_follower().ok_or("no follower")?;
    g.workers[leaving].stop(settle);
    if !g.wait_settled(settle) {
        return Err("graceful stop did not settle".into());
    }
    phase.moved = moved(&before, &g.owners());
    g.wait_handled(steady, settle);

    next = Phase::start("crash (SIGKILL) 4 -> 3");
    phase.to = next.from;
    phases.push(phase);
    let mut phase = next;
    let victim = g.busiest_follower().ok_or("no follower")?;
    phase.moved = g.workers[victim].owned();
    g.workers[victim].kill();
    let killed = unix_micros();
    if !g.wait_settled(settle) {
        return Err("the crashed worker's partitions were not re-owned".into());
    }
    let reowned = unix_micros();
    g.wait_handled(steady, settle);
    phases.push(phase);

    let published = publisher.finish();
    // Bounded wait for the last messages (JetStream: every stored one).
    let drained = |o: &Outcome| {
        o.lost()
            .iter()
            .all(|f| f.published + 2_000_000 < unix_micros())
    };
    let mut outcome = Outcome::of(&published, &g.all());
    for _ in 0..500 {
        if outcome.lost().is_empty() || (helper == Helper::Core && drained(&outcome)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        outcome = Outcome::of(&published, &g.all());
    }
    g.stop_all(settle);
    let dead = g.dead();
    let s = &g.spec;
    println!(
        "\n{helper:?}, profile {profile} (heartbeat {} ms, TTL {} ms, grace {} ms, fetch_wait {} ms), {partitions} partitions, {rate} msg/s",
        s.heartbeat_interval_ms, s.heartbeat_ttl_ms, s.emergency_grace_ms, s.fetch_wait_ms
    );
    println!(
        "published {}, lost {}, handled twice {} (after the crash, by the dead worker first: {}); out of order {}; crash re-owned after {} ms",
        outcome.messages.len(),
        outcome.lost().len(),
        outcome.duplicates().len(),
        outcome.duplicates().len() - outcome.unexplained_duplicates(&dead).len(),
        outcome.out_of_order().len(),
        (reowned - killed) / 1000
    );
    println!(
        "longest callback: releasing {:.1} ms, granting {:.1} ms",
        g.longest_callback_us(false) as f64 / 1000.0,
        g.longest_callback_us(true) as f64 / 1000.0
    );
    println!("{}", table(&outcome, &phases, &dead));
    // Times relative to the first phase's start, in ms.
    let rel = |t: u64| (t as f64 - phases[0].from as f64) / 1000.0;
    for f in outcome.duplicates().iter().take(5) {
        let by: Vec<String> = f
            .handled
            .iter()
            .map(|(w, t)| format!("{w} at {:.1}", rel(*t)))
            .collect();
        let owners: Vec<String> = g
            .history(&f.partition)
            .iter()
            .map(|(w, a, b)| {
                format!(
                    "{w} {:.1}..{}",
                    rel(*a),
                    b.map(|b| format!("{:.1}", rel(b))).unwrap_or_default()
                )
            })
            .collect();
        println!(
            "handled twice: {}#{} published at {:.1} ms, handled by {}; owners {}",
            f.partition,
            f.msg,
            rel(f.published),
            by.join(", "),
            owners.join(", ")
        );
    }
    let starts: Vec<String> = phases
        .iter()
        .map(|p| format!("{} at {:.1}", p.name, rel(p.from)))
        .collect();
    if !outcome.duplicates().is_empty() {
        println!(
            "phases: {}; killed at {:.1}",
            starts.join(", "),
            rel(killed)
        );
    }
    Ok(())
}
