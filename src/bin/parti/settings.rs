//! `--set FIELD=VALUE`: the timings of a `Config`, for `parti worker` (its
//! own configuration) and `parti doctor` (the workers' configuration).

use std::time::Duration;

use parti::Config;

fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(secs) = s.strip_suffix('s') {
        return secs.parse::<f64>().ok().map(Duration::from_secs_f64);
    }
    None
}

/// Applies one `--set FIELD=VALUE` to `config`.
pub fn set_field(config: &mut Config, assignment: &str) -> Result<(), String> {
    let (field, value) = assignment
        .split_once('=')
        .ok_or_else(|| format!("--set wants FIELD=VALUE, got {assignment:?}"))?;
    if field == "restart_ratio" {
        config.restart_ratio = value.parse().map_err(|_| format!("bad ratio {value:?}"))?;
        return Ok(());
    }
    let d =
        parse_duration(value).ok_or_else(|| format!("bad duration {value:?} (use 200ms or 2s)"))?;
    let slot = match field {
        "heartbeat_interval" => &mut config.heartbeat_interval,
        "heartbeat_ttl" => &mut config.heartbeat_ttl,
        "worker_id_ttl" => &mut config.worker_id_ttl,
        "election_ttl" => &mut config.election_ttl,
        "cold_start_window" => &mut config.cold_start_window,
        "planned_scale_window" => &mut config.planned_scale_window,
        "emergency_grace" => &mut config.emergency_grace,
        "rebalance_cooldown" => &mut config.rebalance_cooldown,
        "startup_timeout" => &mut config.startup_timeout,
        "shutdown_timeout" => &mut config.shutdown_timeout,
        "operation_timeout" => &mut config.operation_timeout,
        "handoff_timeout" => &mut config.handoff_timeout,
        other => return Err(format!("unknown config field {other:?}")),
    };
    *slot = d;
    Ok(())
}

/// The `Config` described by `assignments` (each `FIELD=VALUE`) over the
/// defaults.
pub fn config_from(assignments: &[String]) -> Result<Config, String> {
    let mut config = Config::default();
    for a in assignments {
        set_field(&mut config, a)?;
    }
    Ok(config)
}
