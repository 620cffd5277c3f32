//! Timing and sizing knobs, with defaults and validation.

use std::time::Duration;

use crate::Error;

/// How a group behaves: windows, TTLs, timeouts.
///
/// Every field is public; start from [`Config::default`] and override what you
/// need. [`validate`](Config::validate) (also run by `start()`) rejects
/// inconsistent combinations with [`Error::InvalidConfig`] naming the field.
///
/// ```
/// use parti::Config;
/// use std::time::Duration;
/// let config = Config {
///     heartbeat_interval: Duration::from_millis(500),
///     heartbeat_ttl: Duration::from_millis(1500),
///     operation_timeout: Duration::from_millis(500),
///     ..Config::default()
/// };
/// assert!(config.validate().is_ok());
/// let bad = Config { heartbeat_ttl: Duration::from_millis(600), ..config };
/// assert!(bad.validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// How often a worker writes its heartbeat (default 2 s).
    pub heartbeat_interval: Duration,
    /// A worker whose heartbeat was not seen for this long is missing
    /// (default 6 s; at least 2 × `heartbeat_interval`). A worker that cannot
    /// confirm its own heartbeat for 3/4 of this releases its partitions
    /// (self-fencing), so nobody else is granted them while it may still act.
    pub heartbeat_ttl: Duration,
    /// How long a crashed worker's ID stays reserved (default 30 s; at least
    /// `heartbeat_ttl`). Also the max age of the workers bucket.
    pub worker_id_ttl: Duration,
    /// The leader lease (default 5 s). Renewed every third of it; a leader that
    /// cannot renew steps down after 3/4 of it; followers take over when the
    /// lease was not renewed for all of it.
    pub election_ttl: Duration,
    /// How long a new group waits for workers to appear before the first
    /// assignment (default 30 s).
    pub cold_start_window: Duration,
    /// How long the leader waits after a worker joins before rebalancing
    /// (default 10 s). Restarted by further joins, but never longer than
    /// 3 × this from the first join.
    pub planned_scale_window: Duration,
    /// How long a missing worker stays missing before it is declared dead and
    /// its partitions move (default 3 s).
    pub emergency_grace: Duration,
    /// Minimum time between two non-emergency rebalances (default 10 s).
    pub rebalance_cooldown: Duration,
    /// How long `start()` waits for the first assignment beyond the
    /// cold-start window (default 30 s).
    pub startup_timeout: Duration,
    /// Upper bound on `stop()` and `Drop` (default 10 s).
    pub shutdown_timeout: Duration,
    /// Deadline of every single KV operation (default 2 s). Must be below
    /// half of `heartbeat_ttl` and of `election_ttl`.
    pub operation_timeout: Duration,
    /// How much of the group must vanish at once for a fleet restart
    /// (default 0.5; in (0, 1]). Vanishing alone is not enough: the leader
    /// waits the cold-start window only when, in addition, no surviving
    /// worker holds any partition — after an all-gone-then-back restart,
    /// where the workers present are new processes. A zone loss, whatever
    /// fraction it takes, leaves survivors working and is an emergency: the
    /// dead workers' partitions go to the survivors at once, and workers
    /// that come back under their IDs get them back in one planned
    /// rebalance.
    pub restart_ratio: f64,
    /// Worker IDs are `<prefix>-<n>` (default "worker").
    pub worker_id_prefix: String,
    /// Largest group size: IDs run from 0 to `max_workers - 1` (default 1024).
    pub max_workers: u32,
    /// How long the leader waits for a worker to release a partition that
    /// moves before it reports the delay through `on_error` (default 10 s).
    pub handoff_timeout: Duration,
    /// Replicas of the group's KV buckets in a JetStream cluster (default 1).
    pub replicas: usize,
    /// What a worker does when it cannot confirm its heartbeat (NATS
    /// unreachable) for 3/4 of `heartbeat_ttl`.
    ///
    /// `false` (the default, exclusivity): it releases every partition
    /// (`on_assignment_changed` fires with them removed) and enters
    /// `Degraded`, so no two workers ever own a partition at once; it gets
    /// them back when NATS returns.
    ///
    /// `true` (availability, opt-in): it keeps processing its cached
    /// assignment while `Degraded`. If the outage is only on its side, the
    /// leader may meanwhile give its partitions to others: delivery becomes
    /// at-least-once. Use fencing tokens downstream if that matters.
    pub keep_assignment_on_outage: bool,
    /// How long a partition whose required labels no live worker carries
    /// stays parked (unowned) before any worker may take it; `None` (the
    /// default): parked until a worker carrying them joins. A spilled
    /// partition goes back to an eligible worker at the next rebalance
    /// once one is live.
    pub label_spill_grace: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_ttl: Duration::from_secs(6),
            worker_id_ttl: Duration::from_secs(30),
            election_ttl: Duration::from_secs(5),
            cold_start_window: Duration::from_secs(30),
            planned_scale_window: Duration::from_secs(10),
            emergency_grace: Duration::from_secs(3),
            rebalance_cooldown: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(2),
            restart_ratio: 0.5,
            worker_id_prefix: "worker".to_string(),
            max_workers: 1024,
            handoff_timeout: Duration::from_secs(10),
            replicas: 1,
            keep_assignment_on_outage: false,
            label_spill_grace: None,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

impl Config {
    /// Checks every field and their relations.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = [
            ("heartbeat_interval", self.heartbeat_interval),
            ("heartbeat_ttl", self.heartbeat_ttl),
            ("worker_id_ttl", self.worker_id_ttl),
            ("election_ttl", self.election_ttl),
            ("startup_timeout", self.startup_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
            ("operation_timeout", self.operation_timeout),
            ("handoff_timeout", self.handoff_timeout),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return Err(invalid(field, "must be greater than zero"));
            }
        }
        if self.heartbeat_ttl < self.heartbeat_interval * 2 {
            return Err(invalid(
                "heartbeat_ttl",
                format!(
                    "({:?}) must be at least 2 × heartbeat_interval ({:?})",
                    self.heartbeat_ttl, self.heartbeat_interval
                ),
            ));
        }
        if self.worker_id_ttl < self.heartbeat_ttl {
            return Err(invalid(
                "worker_id_ttl",
                format!(
                    "({:?}) must be at least heartbeat_ttl ({:?})",
                    self.worker_id_ttl, self.heartbeat_ttl
                ),
            ));
        }
        if self.election_ttl < Duration::from_millis(30) {
            return Err(invalid("election_ttl", "must be at least 30 ms"));
        }
        if self.operation_timeout * 2 > self.heartbeat_ttl {
            return Err(invalid(
                "operation_timeout",
                "must be at most half of heartbeat_ttl",
            ));
        }
        if self.operation_timeout * 2 > self.election_ttl {
            return Err(invalid(
                "operation_timeout",
                "must be at most half of election_ttl",
            ));
        }
        if !(self.restart_ratio > 0.0 && self.restart_ratio <= 1.0) {
            return Err(invalid(
                "restart_ratio",
                format!("({}) must be in (0, 1]", self.restart_ratio),
            ));
        }
        if self.max_workers == 0 {
            return Err(invalid("max_workers", "must be at least 1"));
        }
        if self.replicas == 0 || self.replicas > 5 {
            return Err(invalid("replicas", "must be between 1 and 5"));
        }
        crate::names::validate_prefix(&self.worker_id_prefix)?;
        Ok(())
    }

    /// A worker that has not confirmed a heartbeat for this long releases its
    /// partitions: 3/4 of the TTL, so it stops before the leader can
    /// declare it dead and grant them elsewhere.
    pub fn self_fence_after(&self) -> Duration {
        self.heartbeat_ttl * 3 / 4
    }

    /// A leader that has not renewed for this long stops acting as leader.
    pub fn lease_step_down_after(&self) -> Duration {
        self.election_ttl * 3 / 4
    }

    /// How often the leader renews its lease.
    pub fn lease_renew_interval(&self) -> Duration {
        self.election_ttl / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn rejects_each_bad_field_by_name() {
        let cases: Vec<(&str, Config)> = vec![
            (
                "heartbeat_interval",
                Config {
                    heartbeat_interval: Duration::ZERO,
                    ..Config::default()
                },
            ),
            (
                "heartbeat_ttl",
                Config {
                    heartbeat_ttl: Duration::from_secs(3),
                    ..Config::default()
                },
            ),
            (
                "worker_id_ttl",
                Config {
                    worker_id_ttl: Duration::from_secs(5),
                    ..Config::default()
                },
            ),
            (
                "restart_ratio",
                Config {
                    restart_ratio: 0.0,
                    ..Config::default()
                },
            ),
            (
                "restart_ratio",
                Config {
                    restart_ratio: 1.5,
                    ..Config::default()
                },
            ),
            (
                "operation_timeout",
                Config {
                    operation_timeout: Duration::from_secs(4),
                    ..Config::default()
                },
            ),
            (
                "worker_id_prefix",
                Config {
                    worker_id_prefix: "bad prefix".into(),
                    ..Config::default()
                },
            ),
            (
                "max_workers",
                Config {
                    max_workers: 0,
                    ..Config::default()
                },
            ),
        ];
        for (field, config) in cases {
            match config.validate() {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                Err(Error::InvalidName { .. }) if field == "worker_id_prefix" => {}
                other => panic!("{field}: expected InvalidConfig, got {other:?}"),
            }
        }
    }
}
