//! Where the list of partitions comes from.
//!
//! The leader reads its source when it takes office, whenever
//! `Manager::refresh_partitions` is called, every
//! `ManagerBuilder::refresh_every` period when one is set, and whenever the
//! source's own [`changes`](PartitionSource::changes) channel fires (as
//! [`KvSource`] does on every add or remove).

mod kv;

use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::{Error, Partition};

pub use kv::KvSource;

/// A source of the current partition list.
pub trait PartitionSource: Send + Sync {
    /// The partitions that exist now.
    fn partitions(&self) -> Result<Vec<Partition>, Error>;

    /// Like [`partitions`](PartitionSource::partitions), but entries that
    /// cannot be used (e.g. corrupt values) are skipped and handed to
    /// `skipped` instead of failing the whole read. The manager reports them
    /// through `on_error`. The default never skips anything.
    fn partitions_reporting(
        &self,
        skipped: &mut dyn FnMut(Error),
    ) -> Result<Vec<Partition>, Error> {
        let _ = skipped;
        self.partitions()
    }

    /// A channel that receives a message whenever the list may have changed,
    /// so the leader re-reads it without anyone calling
    /// `refresh_partitions`. Called once, by `start()`. Several messages may
    /// be coalesced into one. The default (`None`) means the source only
    /// changes when told.
    fn changes(&self) -> Option<Receiver<()>> {
        None
    }
}

/// A fixed list of partitions.
///
/// ```
/// use parti::source::{PartitionSource, StaticSource};
/// use parti::Partition;
/// let source = StaticSource::new((0..4).map(|i| Partition::new(format!("p{i}"))));
/// assert_eq!(source.partitions().unwrap().len(), 4);
/// ```
#[derive(Clone, Debug, Default)]
pub struct StaticSource {
    partitions: Arc<Vec<Partition>>,
}

impl StaticSource {
    /// A source that always returns these partitions.
    pub fn new(partitions: impl IntoIterator<Item = Partition>) -> Self {
        StaticSource {
            partitions: Arc::new(partitions.into_iter().collect()),
        }
    }
}

impl PartitionSource for StaticSource {
    fn partitions(&self) -> Result<Vec<Partition>, Error> {
        Ok(self.partitions.as_ref().clone())
    }
}

/// A source backed by a closure, e.g. one that reads a config file or a
/// database.
///
/// ```
/// use parti::source::{FnSource, PartitionSource};
/// use parti::Partition;
/// let source = FnSource::new(|| Ok(vec![Partition::new("only")]));
/// assert_eq!(source.partitions().unwrap()[0].id(), "only");
/// ```
pub struct FnSource<F>(F);

impl<F> FnSource<F>
where
    F: Fn() -> Result<Vec<Partition>, Error> + Send + Sync,
{
    /// Wraps the closure.
    pub fn new(f: F) -> Self {
        FnSource(f)
    }
}

impl<F> PartitionSource for FnSource<F>
where
    F: Fn() -> Result<Vec<Partition>, Error> + Send + Sync,
{
    fn partitions(&self) -> Result<Vec<Partition>, Error> {
        (self.0)()
    }
}
