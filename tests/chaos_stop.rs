//! `stop()` in every state, including while starting: it returns within the
//! shutdown timeout and, in the end, no thread is left (its own test binary,
//! so that thread counts see only this test).
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use group::{fast_config, partitions, wait_until};
use parti::source::StaticSource;
use parti::{Config, Manager, State};
use support::{thread_count, NatsServer, TcpProxy};

fn build(url: &str, group: &str, config: &Config) -> parti::ManagerBuilder {
    let nc = parti::store::nats::connect(url).expect("connect");
    Manager::builder(nc, group)
        .config(config.clone())
        .partitions(StaticSource::new(partitions(12)))
}

fn timed_stop(m: &Manager, config: &Config, what: &str) {
    let t0 = Instant::now();
    let _ = m.stop();
    let took = t0.elapsed();
    eprintln!("stop in {what}: {took:?}");
    assert!(
        took <= config.shutdown_timeout,
        "stop in {what} took {took:?}"
    );
    assert_eq!(m.state(), State::Shutdown);
}

#[test]
fn stop_in_every_state_is_bounded_and_leaves_no_thread() {
    let mut server = NatsServer::start();
    let config = fast_config();
    let baseline = thread_count();

    // While starting: a long cold-start window keeps it waiting.
    let slow_start = Config {
        cold_start_window: Duration::from_secs(60),
        ..config.clone()
    };
    let m = build(&server.url(), "st-start", &slow_start)
        .spawn()
        .expect("spawn");
    // `spawn()` returns while the ID claim may still run (`ClaimingId`).
    assert!(
        wait_until(Duration::from_secs(5), || matches!(
            m.state(),
            State::Election | State::WaitingAssignment
        )),
        "{}",
        m.state()
    );
    timed_stop(&m, &config, "Election/WaitingAssignment");
    timed_stop(&m, &config, "Shutdown (again)");
    drop(m);

    // Stable.
    let m = build(&server.url(), "st-stable", &config)
        .start()
        .expect("start");
    assert!(wait_until(Duration::from_secs(5), || m.state() == State::Stable));
    timed_stop(&m, &config, "Stable");
    drop(m);

    // Scaling: a leader whose planned window is open.
    let leader = build(&server.url(), "st-scale", &config)
        .start()
        .expect("start");
    let joiner = build(&server.url(), "st-scale", &config)
        .spawn()
        .expect("spawn");
    assert!(wait_until(Duration::from_secs(5), || leader.state() == State::Scaling));
    timed_stop(&leader, &config, "Scaling");
    timed_stop(&joiner, &config, "WaitingAssignment/Stable");
    drop((leader, joiner));

    // Rebalancing: releases are slow, so the handoff stays open.
    let slow_release = |url: &str| {
        build(url, "st-rebal", &config)
            .on_assignment_changed(|c| {
                if !c.removed().is_empty() {
                    std::thread::sleep(Duration::from_millis(800));
                }
            })
            .start()
            .expect("start")
    };
    let leader = slow_release(&server.url());
    let joiner = build(&server.url(), "st-rebal", &config)
        .spawn()
        .expect("spawn");
    assert!(wait_until(Duration::from_secs(10), || leader.state()
        == State::Rebalancing));
    timed_stop(&leader, &config, "Rebalancing");
    timed_stop(&joiner, &config, "after a rebalance");
    drop((leader, joiner));

    // Emergency: a follower cut off through a proxy dies from the leader's
    // point of view; the leader is stopped the moment it enters Emergency.
    let (tx, rx) = mpsc::channel();
    let leader = build(&server.url(), "st-emerg", &config)
        .on_state_changed(move |_, to| {
            if to == State::Emergency {
                let _ = tx.send(());
            }
        })
        .start()
        .expect("start");
    let proxy = TcpProxy::start(server.addr());
    let victim = build(&proxy.url(), "st-emerg", &config)
        .start()
        .expect("start");
    assert!(wait_until(Duration::from_secs(10), || !victim
        .assignment()
        .is_empty()));
    proxy.cut();
    rx.recv_timeout(Duration::from_secs(10))
        .expect("leader entered Emergency");
    timed_stop(&leader, &config, "Emergency");
    timed_stop(&victim, &config, "Degraded (cut off)");
    // The client of a connection closed during an outage ends once the
    // server is reachable again.
    proxy.restore();
    drop((leader, victim));

    // Degraded: NATS is gone.
    let m = build(&server.url(), "st-degraded", &config)
        .start()
        .expect("start");
    server.kill();
    assert!(wait_until(Duration::from_secs(5), || m.state() == State::Degraded));
    timed_stop(&m, &config, "Degraded");
    drop(m);
    server.restart();
    drop(proxy);

    assert!(
        wait_until(Duration::from_secs(10), || thread_count() <= baseline),
        "threads left: {} > {baseline}: {:?}",
        thread_count(),
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("comm")).ok())
            .collect::<Vec<_>>()
    );
}
