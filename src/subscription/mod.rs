//! Subscriptions that follow the assignment: **the Kafka consumer group
//! replacement**.
//!
//! A [`Manager`](crate::Manager) decides which worker owns which partition;
//! these helpers turn that into NATS message flow, so each message of a
//! partition is handled by the partition's current owner only:
//!
//! - [`SubjectSubscriber`] (core NATS, at-most-once): one subscription per
//!   owned partition on a subject template such as `orders.{id}.>`.
//! - [`JetStreamConsumer`] (JetStream, at-least-once): one durable pull
//!   consumer per partition on a work-queue stream, pulled from by the
//!   partition's owner and reset by each new owner; a handler returning `Ok`
//!   acks, `Err` naks. A crash pauses only the dead worker's partitions,
//!   until they are re-owned.
//!
//! What a crash or a planned move costs each of them, and why the consumers
//! are laid out this way: `docs/consumers.md`.
//!
//! Both plug into [`ManagerBuilder::on_assignment_changed`](crate::ManagerBuilder::on_assignment_changed):
//! create the helper first, then call its `apply` from the hook. `apply`
//! returns only once removed partitions are unsubscribed and their in-flight
//! handler calls have finished, and the leader grants a moved partition to
//! its next owner only after the hook returned: the old and the new owner's
//! handlers never overlap.
//!
//! ```no_run
//! use std::sync::Arc;
//! use parti::{Manager, Partition};
//! use parti::source::StaticSource;
//! use parti::subscription::SubjectSubscriber;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sub = Arc::new(SubjectSubscriber::new(
//!     parti::store::nats::connect("127.0.0.1:4222")?, // a connection of its own
//!     "orders.{id}.>",
//!     |partition, msg| println!("{partition}: {} bytes", msg.data.len()),
//! )?);
//! let hook = sub.clone();
//! let manager = Manager::builder(parti::store::nats::connect("127.0.0.1:4222")?, "orders")
//!     .partitions(StaticSource::new((0..16).map(|i| Partition::new(i.to_string()))))
//!     .on_assignment_changed(move |change| hook.apply(change))
//!     .start()?;
//! // ... run ...
//! manager.stop()?; // releases every partition through the hook first
//! sub.stop();
//! # Ok(()) }
//! ```
#![allow(deprecated)] // every item of the `nats` 0.26 crate is deprecated (trap 9)

mod core;
mod jetstream;

pub use self::core::SubjectSubscriber;
pub use self::jetstream::{HandlerError, JetStreamConfig, JetStreamConsumer};

use crate::{Error, Partition};

/// A subject pattern with one `{id}` placeholder, replaced by a partition
/// id, e.g. `orders.{id}.>` gives `orders.7.>` for partition `7`.
///
/// ```
/// use parti::subscription::SubjectTemplate;
/// use parti::Partition;
/// let t = SubjectTemplate::new("orders.{id}.>")?;
/// assert_eq!(t.subject(&Partition::new("7")), "orders.7.>");
/// assert!(SubjectTemplate::new("orders.>").is_err()); // no placeholder
/// # Ok::<(), parti::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectTemplate {
    prefix: String,
    suffix: String,
}

impl SubjectTemplate {
    /// Parses a template; it must contain `{id}` exactly once.
    ///
    /// # Errors
    /// [`Error::InvalidName`] without exactly one `{id}`, or with spaces.
    pub fn new(template: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidName {
            name: template.to_string(),
            reason: reason.to_string(),
        };
        let mut parts = template.split("{id}");
        let prefix = parts.next().unwrap_or_default();
        let Some(suffix) = parts.next() else {
            return Err(invalid("subject template needs an {id} placeholder"));
        };
        if parts.next().is_some() {
            return Err(invalid("subject template must contain {id} once"));
        }
        if template.chars().any(char::is_whitespace) {
            return Err(invalid("subjects cannot contain whitespace"));
        }
        Ok(SubjectTemplate {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The subject (or subject filter) of one partition.
    pub fn subject(&self, partition: &Partition) -> String {
        format!("{}{}{}", self.prefix, partition.id(), self.suffix)
    }
}

/// Checks that a partition id can stand in a subject: one or more tokens
/// without wildcards or whitespace.
fn check_partition(template: &SubjectTemplate, partition: &Partition) -> Result<String, Error> {
    let id = partition.id();
    let bad = id.is_empty()
        || id.starts_with('.')
        || id.ends_with('.')
        || id.contains("..")
        || id
            .chars()
            .any(|c| c.is_whitespace() || c == '*' || c == '>');
    if bad {
        return Err(Error::InvalidPartition {
            id: id.to_string(),
            reason: "cannot be used in a NATS subject".into(),
        });
    }
    Ok(template.subject(partition))
}

/// A partition's message channel, tagged with its id and a number that
/// tells this subscription from an earlier one of the same partition.
type Target = (String, u64, crossbeam_channel::Receiver<nats::Message>);

/// Waits up to `wait` for one message on any of `targets`, or a wake-up:
/// the message with its target's index, `None` on a timeout, a wake-up or a
/// target closed meanwhile (the caller then looks at its state again).
fn next_message(
    targets: &[Target],
    woken: &crossbeam_channel::Receiver<()>,
    wait: std::time::Duration,
) -> Option<(usize, nats::Message)> {
    let mut select = crossbeam_channel::Select::new();
    for (_, _, rx) in targets {
        select.recv(rx);
    }
    let wake_index = select.recv(woken);
    let op = select.select_timeout(wait).ok()?;
    let index = op.index();
    if index == wake_index {
        let _ = op.recv(woken);
        return None;
    }
    op.recv(&targets[index].2).ok().map(|msg| (index, msg))
}

/// A hook for the errors a subscription helper works around (it logs them
/// too).
pub type ErrorHook = Box<dyn Fn(&Error) + Send + Sync>;

fn report(hook: &Option<ErrorHook>, e: Error) {
    log::warn!("parti subscription: {e}");
    if let Some(f) = hook {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&e))).is_err() {
            log::error!("parti subscription: the error hook panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = SubjectTemplate::new("{id}").unwrap();
        assert_eq!(t.subject(&Partition::new("a.b")), "a.b");
        assert!(SubjectTemplate::new("a.{id}.{id}").is_err());
        assert!(SubjectTemplate::new("a b.{id}").is_err());
        let t = SubjectTemplate::new("orders.{id}.>").unwrap();
        assert!(check_partition(&t, &Partition::new("x*")).is_err());
        assert!(check_partition(&t, &Partition::new("")).is_err());
        assert_eq!(
            check_partition(&t, &Partition::new("3")).unwrap(),
            "orders.3.>"
        );
    }
}
