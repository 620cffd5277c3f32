//! Plain data types: partitions, placements, assignments.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::strategy::{in_slot, store, Constraints, Stored};

/// A unit of work that exactly one worker owns at a time.
///
/// Partitions are identified by their `id`; the `weight` (default 1) tells
/// weight-aware strategies how much load the partition carries. Optional
/// label constraints say where it may run ([`require_label`]) and where it
/// should run ([`prefer_label`]); strategies read them through
/// [`AssignmentStrategy::assign_workers`].
///
/// ```
/// use parti::Partition;
/// let p = Partition::with_weight("orders.7", 5);
/// assert_eq!(p.id(), "orders.7");
/// assert_eq!(p.weight(), 5);
/// assert_eq!(Partition::new("a").weight(), 1);
///
/// let vip = Partition::new("orders.8").require_label("pool", "vip").prefer_label("zone", "a");
/// assert_eq!(vip.required_labels().get("pool").map(String::as_str), Some("vip"));
/// assert_eq!(vip.preferred_labels().get("zone").map(String::as_str), Some("a"));
/// ```
///
/// The first 1,024 distinct label sets a process builds are kept for its
/// lifetime, so that copies of a labelled partition share them without a
/// reference count; later sets are reference counted.
///
/// [`require_label`]: Partition::require_label
/// [`prefer_label`]: Partition::prefer_label
/// [`AssignmentStrategy::assign_workers`]: crate::strategy::AssignmentStrategy::assign_workers
#[derive(Clone, Deserialize)]
#[serde(from = "PartitionWire")]
pub struct Partition {
    /// Shared, so that cloning a partition (a strategy clones every one into
    /// the placement it returns) copies a pointer instead of the id.
    id: Arc<str>,
    weight: u32,
    /// The slot of its label constraints in the process-wide table
    /// (`strategy/interned.rs`), or 0: copied, not counted, when a strategy
    /// clones the partition. Fits beside `weight` in the struct's 32 bytes.
    slot: u32,
    /// Its constraints when they have no slot (the table is full); `None`
    /// for the common label-free partition.
    counted: Option<Arc<Constraints>>,
}

/// The serialized form. Label maps default to empty, so records written
/// before labels existed still parse.
#[derive(Deserialize)]
struct PartitionWire {
    id: String,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    require: BTreeMap<String, String>,
    #[serde(default)]
    prefer: BTreeMap<String, String>,
}

impl From<PartitionWire> for Partition {
    fn from(w: PartitionWire) -> Self {
        let mut p = Partition::with_weight(w.id, w.weight);
        if !w.require.is_empty() || !w.prefer.is_empty() {
            p.set_constraints(Constraints::new(w.require, w.prefer));
        }
        p
    }
}

impl Serialize for Partition {
    /// `{"id":..}` plus `weight` unless it is 1 and `require` / `prefer`
    /// unless empty: a label-free partition serializes as it always did.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (required, preferred) = (self.required_labels(), self.preferred_labels());
        let fields = 1
            + usize::from(self.weight != 1)
            + usize::from(!required.is_empty())
            + usize::from(!preferred.is_empty());
        let mut st = serializer.serialize_struct("Partition", fields)?;
        st.serialize_field("id", &*self.id)?;
        if self.weight != 1 {
            st.serialize_field("weight", &self.weight)?;
        }
        if !required.is_empty() {
            st.serialize_field("require", required)?;
        }
        if !preferred.is_empty() {
            st.serialize_field("prefer", preferred)?;
        }
        st.end()
    }
}

fn default_weight() -> u32 {
    1
}

/// What the label accessors return for a partition without labels.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl Partition {
    /// A partition of weight 1.
    pub fn new(id: impl Into<String>) -> Self {
        Partition::with_weight(id, 1)
    }

    /// A partition with an explicit weight.
    pub fn with_weight(id: impl Into<String>, weight: u32) -> Self {
        Partition {
            id: Arc::from(id.into()),
            weight,
            slot: 0,
            counted: None,
        }
    }

    /// Only workers carrying label `key=value` may own this partition (a hard
    /// constraint; several keys must all match). When no live worker
    /// qualifies, strategies leave it unowned. A repeated key keeps the last
    /// value.
    ///
    /// ```
    /// use parti::Partition;
    /// let p = Partition::new("p0").require_label("pool", "vip");
    /// assert_eq!(p.required_labels().len(), 1);
    /// assert!(p.preferred_labels().is_empty());
    /// ```
    pub fn require_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let mut c = self.take_constraints();
        c.required.insert(key.into(), value.into());
        c.encode();
        self.set_constraints(c);
        self
    }

    /// Workers carrying label `key=value` should own this partition (a soft
    /// constraint, e.g. its home zone): strategies honor it as far as balance
    /// allows. With several keys a worker is preferred when it carries all
    /// of them. A repeated key keeps the last value.
    ///
    /// ```
    /// use parti::Partition;
    /// let p = Partition::new("p1").prefer_label("zone", "a");
    /// assert_eq!(p.preferred_labels().get("zone").map(String::as_str), Some("a"));
    /// ```
    pub fn prefer_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let mut c = self.take_constraints();
        c.preferred.insert(key.into(), value.into());
        c.encode();
        self.set_constraints(c);
        self
    }

    /// The partition's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The partition's weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Labels a worker must carry to own this partition (empty: any worker).
    pub fn required_labels(&self) -> &BTreeMap<String, String> {
        self.constraints().map_or(&NO_LABELS, |c| &c.required)
    }

    /// Labels of the workers this partition should preferably run on.
    pub fn preferred_labels(&self) -> &BTreeMap<String, String> {
        self.constraints().map_or(&NO_LABELS, |c| &c.preferred)
    }

    /// The required and the preferred labels as comparable byte strings
    /// (equal exactly when the maps are equal; empty when there are none).
    pub(crate) fn label_keys(&self) -> (&[u8], &[u8]) {
        match self.constraints() {
            Some(c) => c.keys(),
            None => (&[], &[]),
        }
    }

    fn constraints(&self) -> Option<&Constraints> {
        match self.slot {
            0 => self.counted.as_deref(),
            s => in_slot(s),
        }
    }

    /// Its constraints as a value to change (empty when it has none); the
    /// partition holds none until [`set_constraints`](Self::set_constraints).
    fn take_constraints(&mut self) -> Constraints {
        let c = match self.counted.take() {
            Some(c) => Arc::unwrap_or_clone(c),
            None => self.constraints().cloned().unwrap_or_default(),
        };
        self.slot = 0;
        c
    }

    fn set_constraints(&mut self, c: Constraints) {
        (self.slot, self.counted) = match store(c) {
            Stored::Slot(s) => (s, None),
            Stored::Counted(c) => (0, Some(c)),
        };
    }

    /// What equality, order and hash compare: where the constraints are
    /// stored is invisible.
    fn compared(&self) -> (&str, u32, Option<&Constraints>) {
        (&self.id, self.weight, self.constraints())
    }
}

impl PartialEq for Partition {
    fn eq(&self, other: &Self) -> bool {
        self.compared() == other.compared()
    }
}

impl Eq for Partition {}

impl PartialOrd for Partition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Partition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.compared().cmp(&other.compared())
    }
}

impl std::hash::Hash for Partition {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.compared().hash(state);
    }
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("id", &&*self.id)
            .field("weight", &self.weight)
            .field("labels", &self.constraints())
            .finish()
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// Which worker owns which partitions: worker id -> partitions.
pub type Placement = BTreeMap<String, Vec<Partition>>;

/// Why the leader published an assignment version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RebalanceKind {
    /// The first assignment of a group, after the cold-start window.
    ColdStart,
    /// Workers joined or left gracefully.
    PlannedScale,
    /// A worker died; its partitions were reassigned at once.
    Emergency,
    /// Most of the group vanished at once and came back: handled like a cold
    /// start.
    Restart,
    /// The partition source changed.
    PartitionsChanged,
    /// The second step of a handoff: partitions released by their previous
    /// owners are granted to their new ones.
    Handoff,
    /// A worker that had fenced itself (lost NATS) got its partitions back.
    Recovery,
    /// A new leader found its predecessor's work unfinished (partitions
    /// unowned or no longer in the source) and completed it.
    Takeover,
}

impl fmt::Display for RebalanceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RebalanceKind::ColdStart => "cold_start",
            RebalanceKind::PlannedScale => "planned_scale",
            RebalanceKind::Emergency => "emergency",
            RebalanceKind::Restart => "restart",
            RebalanceKind::PartitionsChanged => "partitions_changed",
            RebalanceKind::Handoff => "handoff",
            RebalanceKind::Recovery => "recovery",
            RebalanceKind::Takeover => "takeover",
        };
        f.write_str(s)
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct AssignmentData {
    version: u64,
    epoch: u64,
    /// Sorted by id.
    partitions: Vec<Partition>,
    /// `tokens[i]` is the fencing token of `partitions[i]`.
    tokens: Vec<u64>,
    reason: Option<RebalanceKind>,
}

/// This worker's partitions at one assignment version: a cheap, immutable
/// snapshot (cloning it copies a pointer).
///
/// ```
/// use parti::{Assignment, Partition};
/// let a = Assignment::default();
/// assert_eq!(a.version(), 0);
/// assert!(a.partitions().is_empty());
/// assert!(!a.contains("orders.1"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    data: Arc<AssignmentData>,
}

impl Assignment {
    /// Builds an assignment from `(partition, token)` pairs; they are sorted
    /// by partition id.
    pub fn new(
        version: u64,
        epoch: u64,
        reason: Option<RebalanceKind>,
        partitions: impl IntoIterator<Item = (Partition, u64)>,
    ) -> Self {
        let mut pairs: Vec<(Partition, u64)> = partitions.into_iter().collect();
        pairs.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        pairs.dedup_by(|a, b| a.0.id == b.0.id);
        let (partitions, tokens) = pairs.into_iter().unzip();
        Assignment {
            data: Arc::new(AssignmentData {
                version,
                epoch,
                partitions,
                tokens,
                reason,
            }),
        }
    }

    /// The assignment version: strictly increasing across every assignment
    /// this worker applies, across leaders too. 0 means "nothing assigned yet".
    pub fn version(&self) -> u64 {
        self.data.version
    }

    /// The leader epoch that published this assignment.
    pub fn epoch(&self) -> u64 {
        self.data.epoch
    }

    /// Why this version was published (`None` before the first assignment).
    pub fn reason(&self) -> Option<RebalanceKind> {
        self.data.reason
    }

    /// The partitions, sorted by id.
    pub fn partitions(&self) -> &[Partition] {
        &self.data.partitions
    }

    /// Whether the partition with this id is assigned to this worker.
    pub fn contains(&self, id: &str) -> bool {
        self.index_of(id).is_some()
    }

    /// The fencing token of a partition this worker owns: a number that
    /// strictly increases every time the partition changes owner. Make
    /// downstream writes conditional on it (reject a write whose token is lower
    /// than the highest seen) and a stale owner can never overwrite the newer
    /// one's work, even a process that was frozen past its lease and resumed.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use parti::{Assignment, Partition};
    ///
    /// /// A downstream store that keeps, per partition, the highest token it
    /// /// has accepted, and refuses writes from older owners.
    /// #[derive(Default)]
    /// struct Fenced { high: HashMap<String, u64>, rows: Vec<String> }
    ///
    /// impl Fenced {
    ///     fn write(&mut self, partition: &str, token: u64, row: &str) -> Result<(), String> {
    ///         let high = self.high.entry(partition.to_string()).or_insert(0);
    ///         if token < *high {
    ///             return Err(format!("stale owner of {partition}: token {token} < {high}"));
    ///         }
    ///         *high = token;
    ///         self.rows.push(row.to_string());
    ///         Ok(())
    ///     }
    /// }
    ///
    /// // An old owner got p7 at version 3, the new owner at version 9.
    /// let old = Assignment::new(3, 1, None, [(Partition::new("p7"), 3)]);
    /// let new = Assignment::new(9, 2, None, [(Partition::new("p7"), 9)]);
    /// let mut db = Fenced::default();
    /// db.write("p7", new.token("p7").unwrap(), "from the new owner").unwrap();
    /// assert!(db.write("p7", old.token("p7").unwrap(), "from a zombie").is_err());
    /// ```
    pub fn token(&self, id: &str) -> Option<u64> {
        self.index_of(id).map(|i| self.data.tokens[i])
    }

    /// Number of partitions.
    pub fn len(&self) -> usize {
        self.data.partitions.len()
    }

    /// Whether no partition is assigned.
    pub fn is_empty(&self) -> bool {
        self.data.partitions.is_empty()
    }

    /// `(partition, token)` pairs in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&Partition, u64)> + '_ {
        self.data
            .partitions
            .iter()
            .zip(self.data.tokens.iter().copied())
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.data
            .partitions
            .binary_search_by(|p| (*p.id).cmp(id))
            .ok()
    }
}

/// What changed for this worker between two consecutive assignments.
#[derive(Clone, Debug)]
pub struct AssignmentChange {
    added: Vec<Partition>,
    removed: Vec<Partition>,
    previous: Assignment,
    assignment: Assignment,
}

impl AssignmentChange {
    /// The difference from `previous` to `current`.
    pub fn between(previous: &Assignment, current: &Assignment) -> Self {
        let added = current
            .partitions()
            .iter()
            .filter(|p| !previous.contains(p.id()))
            .cloned()
            .collect();
        let removed = previous
            .partitions()
            .iter()
            .filter(|p| !current.contains(p.id()))
            .cloned()
            .collect();
        AssignmentChange {
            added,
            removed,
            previous: previous.clone(),
            assignment: current.clone(),
        }
    }

    /// Partitions this worker now owns and did not before.
    pub fn added(&self) -> &[Partition] {
        &self.added
    }

    /// Partitions this worker owned before and no longer does: stop working on
    /// them before this callback returns.
    pub fn removed(&self) -> &[Partition] {
        &self.removed
    }

    /// The assignment before the change.
    pub fn previous(&self) -> &Assignment {
        &self.previous
    }

    /// The new full assignment.
    pub fn assignment(&self) -> &Assignment {
        &self.assignment
    }

    /// Whether nothing was added or removed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_lists_real_differences() {
        let a = Assignment::new(
            1,
            1,
            None,
            [(Partition::new("a"), 1), (Partition::new("b"), 1)],
        );
        let b = Assignment::new(
            2,
            1,
            None,
            [(Partition::new("b"), 1), (Partition::new("c"), 2)],
        );
        let c = AssignmentChange::between(&a, &b);
        assert_eq!(c.added(), &[Partition::new("c")]);
        assert_eq!(c.removed(), &[Partition::new("a")]);
        assert_eq!(b.token("c"), Some(2));
        assert_eq!(b.token("a"), None);
    }

    #[test]
    fn label_free_partitions_serialize_as_before() {
        let plain = serde_json::to_string(&Partition::new("a")).unwrap();
        assert_eq!(plain, r#"{"id":"a"}"#);
        let heavy = serde_json::to_string(&Partition::with_weight("b", 3)).unwrap();
        assert_eq!(heavy, r#"{"id":"b","weight":3}"#);
        // Records written before labels existed still parse.
        let old: Partition = serde_json::from_str(r#"{"id":"b","weight":3}"#).unwrap();
        assert_eq!(old, Partition::with_weight("b", 3));
        assert!(old.required_labels().is_empty() && old.preferred_labels().is_empty());
    }

    #[test]
    fn labels_round_trip() {
        let p = Partition::new("p")
            .require_label("pool", "vip")
            .prefer_label("zone", "a")
            .prefer_label("zone", "b");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"id":"p","require":{"pool":"vip"},"prefer":{"zone":"b"}}"#
        );
        let back: Partition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert_ne!(p, Partition::new("p"));
    }

    #[test]
    fn partitions_with_the_same_labels_share_them_however_built() {
        let built: Vec<Partition> = (0..4)
            .map(|i| {
                Partition::new(format!("p{i}"))
                    .require_label("pool", "vip")
                    .prefer_label("zone", "a")
            })
            .collect();
        let read: Vec<Partition> = serde_json::from_str(
            r#"[{"id":"q0","require":{"pool":"vip"},"prefer":{"zone":"a"}},
                {"id":"q1","require":{"pool":"vip"},"prefer":{"zone":"a"}}]"#,
        )
        .unwrap();
        // One slot, or (when other tests of this process filled the table)
        // one counted allocation.
        let first = &built[0];
        for p in built.iter().chain(&read) {
            assert_eq!(p.slot, first.slot, "{p}");
            match (&p.counted, &first.counted) {
                (None, None) => assert_ne!(p.slot, 0, "{p}"),
                (Some(a), Some(b)) => assert!(Arc::ptr_eq(a, b), "{p}"),
                _ => panic!("{p} is stored unlike {first}"),
            }
        }
        assert_eq!(std::mem::size_of::<Partition>(), 32);
        // The same labels held as a counted value (a full table) are equal,
        // ordered and hashed alike.
        let mut counted = built[0].clone();
        let c = counted.take_constraints();
        counted.counted = Some(Arc::new(c));
        assert_eq!(counted, built[0]);
        assert_eq!(counted.cmp(&built[0]), std::cmp::Ordering::Equal);
        use std::hash::BuildHasher;
        let state = std::hash::RandomState::new();
        assert_eq!(state.hash_one(&counted), state.hash_one(&built[0]));
        assert_eq!(format!("{counted:?}"), format!("{:?}", built[0]));
        assert_ne!(counted, Partition::new("p0").require_label("pool", "vip"));
        // Changing a shared value changes only the partition changed.
        let moved = built[1].clone().prefer_label("zone", "b");
        assert_eq!(
            built[2].preferred_labels().get("zone").map(String::as_str),
            Some("a")
        );
        assert_eq!(
            moved.preferred_labels().get("zone").map(String::as_str),
            Some("b")
        );
        assert_eq!(moved.required_labels(), built[2].required_labels());
    }
}
