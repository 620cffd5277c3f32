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
pub(crate) mod start;
pub(crate) mod worker;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Joins `handle` if it ends before `deadline` (its result; `None` also
/// when it panicked); otherwise leaves it running (detached).
pub(crate) fn join_until<T>(handle: JoinHandle<T>, deadline: Instant) -> Option<T> {
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    handle.join().ok()
}
