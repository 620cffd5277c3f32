//! A strategy or partition source that returns errors, on a real
//! nats-server: the placement in force stays, the leader retries with a
//! doubling backoff, reports each distinct error once, and recovers by
//! itself once the plug-in works again.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use group::{fast_config, partitions};
use parti::source::PartitionSource;
use parti::strategy::{AssignmentStrategy, BoundedLoad};
use parti::{Error, Manager, Partition, Placement};
use support::{wait_until, NatsServer};

fn errors_sink() -> (Arc<Mutex<Vec<String>>>, impl Fn(&Error) + Send + Sync) {
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = errors.clone();
    (errors, move |e: &Error| {
        sink.lock().unwrap().push(e.to_string())
    })
}

fn count(errors: &Mutex<Vec<String>>, needle: &str) -> usize {
    errors
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains(needle))
        .count()
}

/// Fails its first `failures` calls, then places like `BoundedLoad`.
struct FlakyStrategy {
    failures: usize,
    calls: Arc<AtomicUsize>,
}

impl AssignmentStrategy for FlakyStrategy {
    fn assign(
        &self,
        workers: &[String],
        partitions: &[Partition],
        previous: &Placement,
    ) -> Result<Placement, Error> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(Error::Plugin {
                what: "strategy",
                reason: "placement service not ready".into(),
            });
        }
        BoundedLoad::default().assign(workers, partitions, previous)
    }
}

/// Serves `list`; fails while `failing` is above zero, counting down.
#[derive(Clone, Default)]
struct FlakySource {
    list: Arc<Mutex<Vec<Partition>>>,
    failing: Arc<AtomicUsize>,
    reads: Arc<AtomicUsize>,
}

impl PartitionSource for FlakySource {
    fn partitions(&self) -> Result<Vec<Partition>, Error> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let down = self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if down {
            return Err(Error::Plugin {
                what: "partition source",
                reason: "catalogue unreachable".into(),
            });
        }
        Ok(self.list.lock().unwrap().clone())
    }
}

#[test]
fn a_failing_strategy_is_retried_with_backoff_reported_once_and_recovers() {
    let server = NatsServer::start();
    let (errors, on_error) = errors_sink();
    let calls = Arc::new(AtomicUsize::new(0));
    let nc = parti::store::nats::connect(&server.url()).unwrap();
    let m = Manager::builder(nc, "flaky-strategy")
        .config(fast_config())
        .partitions(parti::source::StaticSource::new(partitions(8)))
        .strategy(FlakyStrategy {
            failures: 4,
            calls: calls.clone(),
        })
        .on_error(on_error)
        .start()
        .expect("started once the strategy works");
    assert_eq!(m.assignment().len(), 8);
    // Retried 200, 400, 800 and 1600 ms after the failures: the fifth call
    // worked; a retry at every tick would have called it dozens of times.
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(
        count(&errors, "placement service not ready"),
        1,
        "{:?}",
        errors.lock().unwrap()
    );
    m.stop().unwrap();
}

#[test]
fn a_failing_source_keeps_the_placement_and_recovers_on_its_own() {
    let server = NatsServer::start();
    let (errors, on_error) = errors_sink();
    let source = FlakySource::default();
    *source.list.lock().unwrap() = partitions(8);
    let nc = parti::store::nats::connect(&server.url()).unwrap();
    let m = Manager::builder(nc, "flaky-source")
        .config(fast_config())
        .partitions(source.clone())
        .on_error(on_error)
        .start()
        .unwrap();
    assert_eq!(m.assignment().len(), 8);
    // The catalogue grows, but the next four reads fail.
    *source.list.lock().unwrap() = partitions(10);
    source.failing.store(4, Ordering::SeqCst);
    let reads_before = source.reads.load(Ordering::SeqCst);
    m.refresh_partitions().unwrap();
    assert!(wait_until(Duration::from_secs(5), || count(
        &errors,
        "catalogue unreachable"
    ) == 1));
    // While it fails, what was published stays in force.
    let mut kept = true;
    let recovered = wait_until(Duration::from_secs(10), || {
        let n = m.assignment().len();
        kept &= n == 8 || n == 10;
        n == 10
    });
    assert!(recovered, "the new list applied without another refresh");
    assert!(
        kept,
        "the placement in force stayed while the source failed"
    );
    let reads = source.reads.load(Ordering::SeqCst) - reads_before;
    assert_eq!(
        reads, 5,
        "four failures with backoff, then the read that worked"
    );
    assert_eq!(
        count(&errors, "catalogue unreachable"),
        1,
        "{:?}",
        errors.lock().unwrap()
    );
    m.stop().unwrap();
}
