//! A minute of churn: workers joining and leaving every 1–2 s. No two owners
//! at once, and no thread or memory left behind (its own test binary, so
//! thread counts see only this test).

mod group;
mod support;

use std::time::{Duration, Instant};

use group::ledger::Ledger;
use group::*;
use support::{thread_count, NatsServer};

const N: usize = 40;

#[test]
fn a_minute_of_churn_keeps_every_invariant_and_leaks_nothing() {
    let server = NatsServer::start();
    let config = fast_config();
    let baseline_threads = thread_count();
    let mut live_ms: Vec<Recorded> = (0..3)
        .map(|_| start_recorded(&server.url(), "churn", N, &config, false))
        .collect();
    let mut gone: Vec<(String, Vec<group::Event>)> = Vec::new();
    let rss = || {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0)
            * 4096
    };
    let rss_start = rss();
    let t0 = Instant::now();
    let mut step = 0u64;
    while t0.elapsed() < Duration::from_secs(60) && step < 60 {
        step += 1;
        // Deterministic pattern: joins and graceful leaves every 1–2 s,
        // between 2 and 6 workers.
        let join = live_ms.len() < 2 || (live_ms.len() < 6 && step % 3 != 0);
        if join {
            live_ms.push(start_recorded(&server.url(), "churn", N, &config, true));
        } else {
            let i = (step as usize * 7) % live_ms.len();
            let r = live_ms.remove(i);
            r.manager.stop().expect("stop");
            gone.push(r.part());
        }
        std::thread::sleep(Duration::from_millis(1000 + (step % 2) * 1000));
    }
    assert!(
        wait_until(Duration::from_secs(30), || recorded_settled(&live_ms, N)),
        "{:?}",
        recorded_reports(&live_ms)
    );
    let mut parts = gone.clone();
    parts.extend(live_ms.iter().map(|r| r.part()));
    let ledger = Ledger::of_events(&parts);
    let overlaps = ledger.overlaps();
    assert!(
        overlaps.is_empty(),
        "two owners at once:\n{}",
        overlaps.join("\n")
    );
    for r in live_ms.drain(..) {
        r.manager.stop().expect("stop");
    }
    assert!(
        wait_until(Duration::from_secs(10), || thread_count()
            <= baseline_threads),
        "threads: {} > {baseline_threads}",
        thread_count()
    );
    let grown = rss().saturating_sub(rss_start);
    eprintln!("churn: {step} steps, RSS grew {} KiB", grown / 1024);
    assert!(grown < 64 << 20, "RSS grew by {} MiB", grown >> 20);
}
