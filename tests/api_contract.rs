//! The public API exactly as the issues write it: if this file stops
//! compiling, a contract broke. It also runs, against a real server.

mod support;

use std::sync::Arc;
use std::time::Duration;

use parti::source::StaticSource;
use parti::strategy::{AssignmentStrategy, BoundedLoad, ConsistentHash, RoundRobin};
use parti::{Assignment, AssignmentChange, Config, Error, Manager, Partition, Placement, State};
use support::NatsServer;

fn assert_send_sync<T: Send + Sync>() {}
fn assert_copy_eq_debug_display<T: Copy + Eq + std::fmt::Debug + std::fmt::Display>() {}
fn assert_error<T: std::error::Error>() {}
fn assert_clone_debug<T: Clone + std::fmt::Debug>() {}

#[test]
fn the_manager_api_of_the_issues() {
    assert_send_sync::<Manager>();
    assert_copy_eq_debug_display::<State>();
    assert_error::<Error>();
    assert_clone_debug::<Assignment>();
    assert_clone_debug::<Partition>();

    let server = NatsServer::start();
    let nc = parti::store::nats::connect(&server.url()).expect("connect");
    let manager: Manager = Manager::builder(nc, "orders")
        .config(Config {
            heartbeat_interval: Duration::from_millis(500),
            cold_start_window: Duration::from_millis(500),
            ..Config::default()
        })
        .partitions(StaticSource::new(
            (0..64).map(|i| Partition::new(format!("orders.{i}"))),
        ))
        .strategy(ConsistentHash::default())
        .on_assignment_changed(|c: &AssignmentChange| {
            let _ = (c.added(), c.removed(), c.assignment());
        })
        .on_state_changed(|_from: State, _to: State| {})
        .on_leadership_changed(|_is_leader: bool| {})
        .on_error(|_e: &Error| {})
        .start()
        .expect("start");
    let manager = Arc::new(manager);
    assert!(manager.worker_id().starts_with("worker-"));
    assert!(manager.is_leader());
    let a: Assignment = manager.assignment();
    assert_eq!(a.partitions().len(), 64);
    assert!(a.version() > 0);
    assert!(a.contains("orders.3"));
    assert!(a.token("orders.3").is_some());
    let _epoch: u64 = a.epoch();
    manager
        .wait_for_state(State::Stable, Duration::from_secs(5))
        .expect("stable");
    manager.refresh_partitions().expect("refresh");
    let p = Partition::with_weight("x", 3);
    assert_eq!((p.id(), p.weight()), ("x", 3));
    manager.stop().expect("stop");
    assert_eq!(manager.state(), State::Shutdown);
}

#[test]
// `RoundRobin::default()` is how the issue spells it.
#[allow(clippy::default_constructed_unit_structs)]
fn the_strategy_api_of_the_issues() {
    let workers: Vec<String> = (0..3).map(|i| format!("worker-{i}")).collect();
    let partitions: Vec<Partition> = (0..10).map(|i| Partition::new(format!("p{i}"))).collect();
    let strategies: Vec<Box<dyn AssignmentStrategy>> = vec![
        Box::new(RoundRobin::default()),
        Box::new(ConsistentHash::default()),
        Box::new(ConsistentHash::with_virtual_nodes(50)),
        Box::new(BoundedLoad::default()),
        Box::new(BoundedLoad::with_epsilon(0.1)),
    ];
    for s in &strategies {
        let placed: Placement = s
            .assign(&workers, &partitions, &Placement::new())
            .expect("assign");
        assert_eq!(placed.values().map(Vec::len).sum::<usize>(), 10);
        assert!(matches!(
            s.assign(&[], &partitions, &Placement::new()),
            Err(Error::NoWorkers)
        ));
    }
}
