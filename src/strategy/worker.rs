//! What a strategy knows about a worker beyond its id.

use std::collections::BTreeMap;

use crate::Error;

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

/// Most labels a worker may carry.
pub(crate) const MAX_LABELS: usize = 16;
/// Longest label key or value.
pub(crate) const MAX_LABEL_LEN: usize = 63;
/// Largest capacity a worker may announce.
pub(crate) const MAX_CAPACITY: u32 = 10_000;

/// Checks a worker's labels and capacity as set on the builder: they travel
/// in every heartbeat and are compared by every leader, so they are kept
/// small and printable.
pub(crate) fn check_descriptor(
    labels: &BTreeMap<String, String>,
    capacity: u32,
) -> Result<(), Error> {
    let bad = |field: &'static str, reason: String| Err(Error::InvalidConfig { field, reason });
    if labels.len() > MAX_LABELS {
        return bad(
            "label",
            format!("{} labels, at most {MAX_LABELS} allowed", labels.len()),
        );
    }
    let printable = |s: &str| {
        !s.is_empty()
            && s.len() <= MAX_LABEL_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    for (key, value) in labels {
        for part in [key, value] {
            if !printable(part) {
                return bad(
                    "label",
                    format!(
                        "{key:?}={value:?}: keys and values need 1 to {MAX_LABEL_LEN} characters of [A-Za-z0-9._-]"
                    ),
                );
            }
        }
    }
    if capacity == 0 || capacity > MAX_CAPACITY {
        return bad(
            "capacity",
            format!("{capacity}: must be 1 to {MAX_CAPACITY}"),
        );
    }
    Ok(())
}

/// A label map from pairs (tests of label code).
#[cfg(test)]
pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_checked() {
        assert!(check_descriptor(&labels(&[("zone", "eu-west-1a")]), 2).is_ok());
        let field = |r: Result<(), Error>| match r {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        assert_eq!(field(check_descriptor(&labels(&[("", "a")]), 1)), "label");
        assert_eq!(
            field(check_descriptor(&labels(&[("zone", "")]), 1)),
            "label"
        );
        assert_eq!(
            field(check_descriptor(&labels(&[("zone", "a b")]), 1)),
            "label"
        );
        let long = "x".repeat(MAX_LABEL_LEN + 1);
        assert_eq!(
            field(check_descriptor(&labels(&[("zone", &long)]), 1)),
            "label"
        );
        let many: BTreeMap<String, String> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert_eq!(field(check_descriptor(&many, 1)), "label");
        assert_eq!(field(check_descriptor(&BTreeMap::new(), 0)), "capacity");
        assert_eq!(
            field(check_descriptor(&BTreeMap::new(), MAX_CAPACITY + 1)),
            "capacity"
        );
    }
}
