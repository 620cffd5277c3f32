//! The checks of a resolved [`Config`]: each failure names the field and,
//! where one exists, a value that would fit.

use std::time::Duration;

use super::Config;
use crate::Error;

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

/// Every field and their relations.
pub(super) fn check(c: &Config) -> Result<(), Error> {
    let positive = [
        ("heartbeat_interval", c.heartbeat_interval),
        ("heartbeat_ttl", c.heartbeat_ttl),
        ("worker_id_ttl", c.worker_id_ttl),
        ("election_ttl", c.election_ttl),
        ("startup_timeout", c.startup_timeout),
        ("shutdown_timeout", c.shutdown_timeout),
        ("operation_timeout", c.operation_timeout),
        ("handoff_timeout", c.handoff_timeout),
    ];
    for (field, value) in positive {
        if value.is_zero() {
            return Err(invalid(field, "must be greater than zero"));
        }
    }
    if c.heartbeat_ttl < c.heartbeat_interval * 2 {
        return Err(invalid(
            "heartbeat_ttl",
            format!(
                "({:?}) must be at least 2 × heartbeat_interval ({:?}): use {:?} or more, \
                 or a heartbeat_interval of at most {:?}",
                c.heartbeat_ttl,
                c.heartbeat_interval,
                c.heartbeat_interval * 2,
                c.heartbeat_ttl / 2
            ),
        ));
    }
    if c.worker_id_ttl < c.heartbeat_ttl {
        return Err(invalid(
            "worker_id_ttl",
            format!(
                "({:?}) must be at least heartbeat_ttl ({:?}): use {:?} or more",
                c.worker_id_ttl, c.heartbeat_ttl, c.heartbeat_ttl
            ),
        ));
    }
    let min_lease = Duration::from_millis(30);
    if c.election_ttl < min_lease {
        return Err(invalid(
            "election_ttl",
            format!("({:?}) must be at least {min_lease:?}", c.election_ttl),
        ));
    }
    for (ttl_field, ttl) in [
        ("heartbeat_ttl", c.heartbeat_ttl),
        ("election_ttl", c.election_ttl),
    ] {
        if c.operation_timeout * 2 > ttl {
            return Err(invalid(
                "operation_timeout",
                format!(
                    "({:?}) must be at most half of {ttl_field} ({ttl:?}): use {:?} or less, \
                     or a {ttl_field} of at least {:?}",
                    c.operation_timeout,
                    ttl / 2,
                    c.operation_timeout * 2
                ),
            ));
        }
    }
    if !(c.restart_ratio > 0.0 && c.restart_ratio <= 1.0) {
        return Err(invalid(
            "restart_ratio",
            format!("({}) must be in (0, 1], e.g. 0.5", c.restart_ratio),
        ));
    }
    if c.max_workers == 0 {
        return Err(invalid("max_workers", "must be at least 1"));
    }
    if c.replicas == 0 || c.replicas > 5 {
        return Err(invalid(
            "replicas",
            format!("({}) must be between 1 and 5", c.replicas),
        ));
    }
    crate::names::validate_prefix(&c.worker_id_prefix)?;
    Ok(())
}
