//! The thread shell around the pure core: one thread each for heartbeats,
//! the election, the leader's calculation (while leading) and the user's
//! callbacks, talking over crossbeam channels.

pub(crate) mod claim;
pub(crate) mod driver;
pub(crate) mod election;
pub(crate) mod hooks;
pub(crate) mod leader;
pub(crate) mod measure;
pub(crate) mod metered;
pub(crate) mod shared;
pub(crate) mod worker;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Joins `handle` if it ends before `deadline`; otherwise leaves it running
/// (detached) and returns false.
pub(crate) fn join_until(handle: JoinHandle<()>, deadline: Instant) -> bool {
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    handle.join().is_ok()
}
