//! An idle group costs next to no CPU, even when its partition source hands
//! the leader a change channel whose sender is gone (a disconnected channel
//! is always ready: polled, it would spin the leader thread). Its own test
//! binary, so that no other test's threads are counted.

mod group;
mod support;

use std::time::Duration;

use crossbeam_channel::Receiver;
use group::{fast_config, partitions};
use parti::source::{PartitionSource, StaticSource};
use parti::{Error, Manager, Partition, State};
use support::NatsServer;

/// A static list whose change channel is disconnected from the start.
struct DeadChanges(StaticSource);

impl PartitionSource for DeadChanges {
    fn partitions(&self) -> Result<Vec<Partition>, Error> {
        self.0.partitions()
    }

    fn changes(&self) -> Option<Receiver<()>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        drop(tx);
        Some(rx)
    }
}

/// CPU time (user + system) this process has used, from /proc.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // The fields after the command name (which may contain spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

#[test]
fn an_idle_group_with_a_disconnected_change_channel_does_not_spin() {
    let server = NatsServer::start();
    let nc = parti::store::nats::connect(&server.url()).unwrap();
    let m = Manager::builder(nc, "idle-cpu")
        .config(fast_config())
        .partitions(DeadChanges(StaticSource::new(partitions(8))))
        .start()
        .unwrap();
    assert_eq!(m.state(), State::Stable);
    assert_eq!(m.assignment().len(), 8);
    let window = Duration::from_secs(3);
    let before = process_cpu();
    std::thread::sleep(window);
    let used = process_cpu() - before;
    eprintln!("idle one-worker group: {used:?} of CPU in {window:?}");
    // Heartbeats every 200 ms and lease renewals every 400 ms cost a few
    // milliseconds; the spinning leader used about 60 % of a core.
    assert!(
        used < window / 10,
        "an idle group used {used:?} of CPU in {window:?}"
    );
    assert_eq!(m.assignment().len(), 8, "and it still holds its partitions");
    m.stop().unwrap();
}
