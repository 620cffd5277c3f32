//! What a strategy knows about a worker beyond its id.

use std::collections::BTreeMap;

/// A live worker as placement sees it: its id, its labels (e.g. `zone`,
/// `pool`) and its capacity, a relative weight (default 1): a worker of
/// capacity 2 is given twice the load of a worker of capacity 1.
///
/// ```
/// use parti::strategy::WorkerInfo;
/// let w = WorkerInfo::new("worker-0").label("zone", "a").capacity(2);
/// assert_eq!(w.id(), "worker-0");
/// assert_eq!(w.labels().get("zone").map(String::as_str), Some("a"));
/// assert!(w.has_label("zone", "a"));
/// assert_eq!(w.capacity_value(), 2);
/// assert_eq!(WorkerInfo::new("worker-1").capacity_value(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    id: String,
    labels: BTreeMap<String, String>,
    capacity: u32,
}

impl WorkerInfo {
    /// A worker without labels, of capacity 1.
    pub fn new(id: impl Into<String>) -> Self {
        WorkerInfo {
            id: id.into(),
            labels: BTreeMap::new(),
            capacity: 1,
        }
    }

    /// Adds label `key=value`; a repeated key keeps the last value.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the capacity. A capacity of 0 counts as 1, as a partition weight
    /// of 0 does: to take a worker out of placement, leave it out of the list.
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The worker's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// Whether the worker carries label `key=value`.
    pub fn has_label(&self, key: &str, value: &str) -> bool {
        self.labels.get(key).is_some_and(|v| v == value)
    }

    /// The capacity as set (see [`WorkerInfo::capacity`] for how 0 counts).
    pub fn capacity_value(&self) -> u32 {
        self.capacity
    }

    /// Whether the worker carries every label of `wanted`.
    pub(crate) fn matches(&self, wanted: &BTreeMap<String, String>) -> bool {
        wanted.iter().all(|(k, v)| self.has_label(k, v))
    }
}

impl From<&str> for WorkerInfo {
    fn from(id: &str) -> Self {
        WorkerInfo::new(id)
    }
}

impl From<String> for WorkerInfo {
    fn from(id: String) -> Self {
        WorkerInfo::new(id)
    }
}
