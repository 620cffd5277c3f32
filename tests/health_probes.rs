//! Kubernetes probes on real NATS: liveness survives a NATS outage (so a
//! probe never restarts the fleet because NATS is down), readiness follows
//! the assignment, and liveness fails only when the manager is wedged or
//! shut down.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use group::{fast_config, partitions, start_manager, wait_until};
use parti::source::StaticSource;
use parti::{Manager, State};
use support::{NatsServer, TcpProxy};

#[test]
fn live_through_a_cut_link_ready_again_after_it() {
    let server = NatsServer::start();
    let config = fast_config();
    let (other, _) = start_manager(&server.url(), "probes", 8, &config);
    let proxy = TcpProxy::start(server.addr());
    let (m, _) = start_manager(&proxy.url(), "probes", 8, &config);
    assert!(
        wait_until(Duration::from_secs(10), || m.health().is_ready()
            && m.health().partitions > 0),
        "{:?}",
        m.health()
    );
    assert!(m.health().is_live() && m.health().is_heartbeat_confirmed());

    // Cut the link for four heartbeat TTLs: the worker fences itself (not
    // ready) but stays live the whole time.
    proxy.cut();
    let cut_for = config.heartbeat_ttl * 4;
    let until = Instant::now() + cut_for;
    let (mut went_unready, mut unconfirmed) = (false, false);
    while Instant::now() < until {
        let h = m.health();
        assert!(h.is_live(), "not live during the outage: {h:?}");
        went_unready |= !h.is_ready();
        unconfirmed |= !h.is_heartbeat_confirmed();
        std::thread::sleep(Duration::from_millis(20));
    }
    let h = m.health();
    assert!(
        went_unready && !h.is_ready(),
        "still ready after {cut_for:?}: {h:?}"
    );
    assert!(unconfirmed && h.degraded_since.is_some(), "{h:?}");
    assert_eq!(h.partitions, 0, "fenced worker kept partitions: {h:?}");

    // Restored: heartbeats get through and the worker is ready again with
    // an assignment, live all along.
    proxy.restore();
    assert!(
        wait_until(Duration::from_secs(15), || {
            let h = m.health();
            assert!(h.is_live(), "not live while recovering: {h:?}");
            h.is_ready() && h.is_heartbeat_confirmed() && h.partitions > 0
        }),
        "not ready again: {:?}",
        m.health()
    );
    m.stop().expect("stop");
    assert!(!m.health().is_live() && !m.health().is_ready());
    other.stop().expect("stop");
}

#[test]
fn a_callback_stuck_past_the_handoff_timeout_fails_liveness() {
    let server = NatsServer::start();
    let config = parti::Config {
        handoff_timeout: Duration::from_millis(800),
        ..fast_config()
    };
    // The first assignment callback blocks until the test lets it go.
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let blocked = Arc::new(Mutex::new(false));
    let b = blocked.clone();
    let nc = parti::store::nats::connect(&server.url()).expect("connect");
    let m = Manager::builder(nc, "wedged")
        .config(config.clone())
        .partitions(StaticSource::new(partitions(4)))
        .on_assignment_changed(move |_| {
            let first = !std::mem::replace(&mut *b.lock().unwrap(), true);
            if first {
                let _ = release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(20));
            }
        })
        .start()
        .expect("start");
    let h = m.health();
    assert!(h.is_live(), "{h:?}");
    assert!(h.stall_after >= config.heartbeat_ttl, "{h:?}");

    // Heartbeats are suspended at the handoff timeout; liveness fails once
    // the thread has made no progress for `stall_after`.
    let bound = config.handoff_timeout + h.stall_after + Duration::from_secs(5);
    assert!(
        wait_until(bound, || !m.health().is_live()),
        "still live with a stuck callback: {:?}",
        m.health()
    );
    assert_eq!(m.state().is_assigned(), m.health().is_ready());

    // The callback returns: heartbeats resume, live again.
    release_tx.send(()).expect("release the callback");
    assert!(
        wait_until(Duration::from_secs(10), || m.health().is_live()),
        "{:?}",
        m.health()
    );
    m.stop().expect("stop");
    assert_eq!(m.state(), State::Shutdown);
}
