//! Group and worker names, and the bucket and key names derived from them.

use crate::Error;

fn invalid(name: &str, reason: &str) -> Error {
    Error::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    }
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A group name becomes part of bucket names: `[-_a-zA-Z0-9]`, 1 to 64 bytes.
pub(crate) fn validate_group(group: &str) -> Result<(), Error> {
    if group.is_empty() {
        return Err(invalid(group, "group name is empty"));
    }
    if group.len() > 64 {
        return Err(invalid(group, "group name is longer than 64 bytes"));
    }
    if !group.bytes().all(is_name_char) {
        return Err(invalid(
            group,
            "group name may only contain ASCII letters, digits, '-' and '_'",
        ));
    }
    Ok(())
}

/// A worker-ID prefix becomes part of KV keys: `[-_a-zA-Z0-9]`, 1 to 64 bytes.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), Error> {
    if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(is_name_char) {
        return Err(invalid(
            prefix,
            "worker_id_prefix must be 1 to 64 ASCII letters, digits, '-' or '_'",
        ));
    }
    if prefix.starts_with('_') {
        return Err(invalid(prefix, "worker_id_prefix may not start with '_'"));
    }
    Ok(())
}

/// `<prefix>-<n>`.
pub(crate) fn worker_id(prefix: &str, n: u32) -> String {
    format!("{prefix}-{n}")
}

/// The `n` of `<prefix>-<n>`, when `id` has that shape.
pub(crate) fn worker_number(prefix: &str, id: &str) -> Option<u32> {
    let rest = id.strip_prefix(prefix)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok()
}

/// The names of a group's buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketNames {
    /// Worker registrations and heartbeats (max age: `worker_id_ttl`).
    pub workers: String,
    /// The leader lease (max age: `election_ttl`).
    pub leader: String,
    /// Assignments, one key per worker plus `_meta` (no max age).
    pub assignments: String,
}

impl BucketNames {
    /// The buckets of `group` (validated).
    pub fn for_group(group: &str) -> Result<Self, Error> {
        validate_group(group)?;
        Ok(BucketNames {
            workers: format!("parti-{group}-workers"),
            leader: format!("parti-{group}-leader"),
            assignments: format!("parti-{group}-assignments"),
        })
    }
}

/// The key of the leader lease.
pub const LEADER_KEY: &str = "leader";
/// The key of the assignment summary.
pub const META_KEY: &str = "_meta";

/// Key a follower writes in the workers bucket to ask the leader to re-read
/// the partition source.
pub(crate) const REFRESH_KEY: &str = "_refresh";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups() {
        assert!(validate_group("orders").is_ok());
        assert!(validate_group("a-b_C9").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(65)] {
            assert!(
                matches!(validate_group(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn worker_numbers_round_trip() {
        assert_eq!(worker_number("worker", &worker_id("worker", 12)), Some(12));
        assert_eq!(worker_number("worker", "worker-"), None);
        assert_eq!(worker_number("worker", "worker-01"), None);
        assert_eq!(worker_number("worker", "other-1"), None);
        assert_eq!(worker_number("w", "w-x"), None);
    }
}
