//! `stop()` joins every thread the manager started (its own file: thread
//! counts must not see other tests' threads).
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::time::Duration;

use group::{exactly_once, fast_config, manager_report, start_manager, wait_until};
use support::{thread_count, NatsServer};

#[test]
fn stop_leaves_no_thread_behind() {
    let server = NatsServer::start();
    let config = fast_config();
    // The nats client keeps a few process-wide threads once any connection
    // existed: make them part of the baseline.
    {
        let nc = parti::store::nats::connect(&server.url()).expect("connect");
        nc.flush_timeout(Duration::from_secs(2)).ok();
        nc.close();
    }
    let baseline = thread_count();
    let ms: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn({
                let (url, config) = (server.url(), config.clone());
                move || start_manager(&url, "threads", 12, &config).0
            })
        })
        .map(|h| h.join().unwrap())
        .collect();
    let refs: Vec<_> = ms.iter().collect();
    assert!(wait_until(Duration::from_secs(5), || exactly_once(
        &manager_report(&refs),
        12
    )));
    let running = thread_count();
    assert!(running > baseline, "managers run threads");
    for m in &ms {
        m.stop().expect("stop");
    }
    drop(refs);
    drop(ms);
    assert!(
        wait_until(Duration::from_secs(5), || thread_count() <= baseline),
        "threads left: {} (baseline {baseline}, running {running}): {:?}",
        thread_count(),
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("comm")).ok())
            .collect::<Vec<_>>()
    );
}
