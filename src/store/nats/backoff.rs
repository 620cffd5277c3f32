//! The reconnect delay parti's connections use instead of the crate's.
//!
//! The `nats` 0.26 crate calls its reconnect-delay callback before every
//! connect attempt, the very first included, and its default adds 0–1 s of
//! random jitter even to attempt 0: every connect then sleeps ~0.5 s before
//! it dials, and every reconnect after an outage as well.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The delay before the second attempt (before jitter).
const FIRST: Duration = Duration::from_millis(20);
/// The longest delay between two attempts.
const CAP: Duration = Duration::from_millis(500);

/// How long to wait before connect attempt `attempt` (0 = the first one
/// to a server, also the first one after a lost connection): 0 for the
/// first, then 20 ms doubling up to 500 ms, each drawn at random from its
/// upper half so that many clients cut off together do not return in step.
///
/// parti's own options ([`connect_options`](super::connect_options),
/// [`options_with`](super::options_with)) use it; pass it to
/// `nats::Options::reconnect_delay_callback` when building options yourself.
///
/// ```
/// # #![allow(deprecated)]
/// use std::time::Duration;
/// use parti::store::nats::reconnect_delay;
///
/// assert_eq!(reconnect_delay(0), Duration::ZERO);
/// assert!(reconnect_delay(1) <= Duration::from_millis(20));
/// assert!(reconnect_delay(100) <= Duration::from_millis(500));
/// let options = nats::Options::new().reconnect_delay_callback(reconnect_delay);
/// # let _ = options;
/// ```
pub fn reconnect_delay(attempt: usize) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(attempt - 1).unwrap_or(u32::MAX).min(16);
    let ceiling = FIRST.saturating_mul(1 << doublings).min(CAP);
    let half = ceiling / 2;
    half + half.mul_f64(unit_random())
}

/// A random number in [0, 1) from the standard library's per-process
/// random hash keys (no extra dependency for a little jitter).
fn unit_random() -> f64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_attempt_is_immediate_then_capped_backoff() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        for attempt in 1..200 {
            let d = reconnect_delay(attempt);
            let ceiling = if attempt > 10 {
                CAP
            } else {
                (FIRST * (1 << (attempt - 1))).min(CAP)
            };
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
        }
        assert_eq!(reconnect_delay(usize::MAX).max(CAP), CAP);
    }

    #[test]
    fn delays_are_jittered() {
        let draws: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| reconnect_delay(8)).collect();
        assert!(draws.len() > 10, "{draws:?}");
    }
}
