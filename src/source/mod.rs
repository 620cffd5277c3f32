//! Where the list of partitions comes from.

use std::sync::Arc;

use crate::{Error, Partition};

/// A source of the current partition list. The leader reads it when it takes
/// office and whenever `Manager::refresh_partitions` is called.
pub trait PartitionSource: Send + Sync {
    /// The partitions that exist now.
    fn partitions(&self) -> Result<Vec<Partition>, Error>;
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
