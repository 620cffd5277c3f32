//! The user's callbacks, and the thread that runs them in order.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::error::panic_message;
use crate::{AssignmentChange, Error, Partition, State};

type ChangeHook = Box<dyn Fn(&AssignmentChange) + Send + Sync>;
type StateHook = Box<dyn Fn(State, State) + Send + Sync>;
type LeaderHook = Box<dyn Fn(bool) + Send + Sync>;
type ErrorHook = Box<dyn Fn(&Error) + Send + Sync>;
type PrepareHook = Box<dyn Fn(&[Partition]) + Send + Sync>;

/// The registered hooks.
#[derive(Default)]
pub(crate) struct Hooks {
    pub assignment_changed: Option<ChangeHook>,
    pub state_changed: Option<StateHook>,
    pub leadership_changed: Option<LeaderHook>,
    pub error: Option<ErrorHook>,
    pub prepare: Option<PrepareHook>,
}

/// A unit of work for the callback thread.
pub(crate) enum Job {
    /// Run `on_assignment_changed`, then report `version` as applied.
    Assignment(AssignmentChange),
    State(State, State),
    Leadership(bool),
    Error(Error),
    /// Run `on_prepare` unless `until` has passed, then report `version`
    /// (if any) as applied.
    Prepare {
        partitions: Vec<Partition>,
        until: Instant,
        version: Option<u64>,
    },
}

/// Runs `hook` (if set) with `f`, catching a panic.
fn call<F: ?Sized>(hook: &Option<Box<F>>, f: impl FnOnce(&F)) -> Option<std::thread::Result<()>> {
    hook.as_deref()
        .map(|h| catch_unwind(AssertUnwindSafe(|| f(h))))
}

impl Hooks {
    fn run(&self, job: &Job) -> Result<(), Error> {
        let (name, result) = match job {
            Job::Assignment(c) => (
                "on_assignment_changed",
                call(&self.assignment_changed, |f| f(c)),
            ),
            Job::State(from, to) => (
                "on_state_changed",
                call(&self.state_changed, |f| f(*from, *to)),
            ),
            Job::Leadership(lead) => (
                "on_leadership_changed",
                call(&self.leadership_changed, |f| f(*lead)),
            ),
            Job::Prepare {
                partitions, until, ..
            } => {
                let fresh = !partitions.is_empty() && Instant::now() < *until;
                // Stale news is dropped without running the hook.
                let ran = fresh.then(|| call(&self.prepare, |f| f(partitions)));
                ("on_prepare", ran.flatten())
            }
            Job::Error(e) => ("on_error", call(&self.error, |f| f(e))),
        };
        match result {
            Some(Err(payload)) => Err(Error::CallbackPanicked {
                callback: name,
                message: panic_message(payload.as_ref()),
            }),
            _ => Ok(()),
        }
    }
}

/// Spawns the callback thread. It runs jobs in order and reports each applied
/// assignment version to `applied`; it ends when every job sender is gone.
pub(crate) fn spawn(
    name: String,
    hooks: Hooks,
    jobs: Receiver<Job>,
    applied: impl Fn(u64) + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        for job in jobs.iter() {
            let version = match &job {
                Job::Assignment(c) => Some(c.assignment().version()),
                Job::Prepare { version, .. } => *version,
                _ => None,
            };
            if let Err(e) = hooks.run(&job) {
                log::error!("{e}");
                if !matches!(job, Job::Error(_)) {
                    // Reported through on_error; a panic there is only logged.
                    let _ = hooks.run(&Job::Error(e));
                }
            }
            if let Some(v) = version {
                applied(v);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_panicking_on_prepare_is_reported_and_its_version_still_applied() {
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        let hooks = Hooks {
            prepare: Some(Box::new(|_: &[Partition]| panic!("cold cache"))),
            error: Some(Box::new(move |e: &Error| {
                sink.lock().unwrap().push(e.to_string())
            })),
            ..Hooks::default()
        };
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let (applied_tx, applied_rx) = crossbeam_channel::unbounded();
        let applied = move |v| {
            let _ = applied_tx.send(v);
        };
        let thread = spawn("test-callbacks".into(), hooks, jobs_rx, applied).unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        let job = |version| Job::Prepare {
            partitions: vec![Partition::new("p")],
            until,
            version,
        };
        jobs_tx.send(job(Some(7))).unwrap();
        // Stale news is dropped without running the hook.
        jobs_tx
            .send(Job::Prepare {
                partitions: vec![Partition::new("q")],
                until: Instant::now(),
                version: Some(8),
            })
            .unwrap();
        drop(jobs_tx);
        thread.join().unwrap();
        assert_eq!(applied_rx.try_iter().collect::<Vec<_>>(), [7, 8]);
        let errors = errors.lock().unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("on_prepare") && errors[0].contains("cold cache"));
    }
}
