//! The ratios between a TTL and what is timed from it, in one place: the
//! leader lease and the heartbeats (which renew a worker's ID) follow the
//! same rules, and the defaults derived in `resolve` use them too.

use std::time::Duration;

/// A lease or a heartbeat is renewed this many times per TTL: two renewals
/// may fail before it expires.
const RENEWALS_PER_TTL: u32 = 3;

/// How often something with `ttl` is renewed: a third of it.
pub(crate) fn renew_every(ttl: Duration) -> Duration {
    ttl / RENEWALS_PER_TTL
}

/// The TTL that a renewal every `interval` keeps alive (the inverse of
/// [`renew_every`]).
pub(crate) fn ttl_for(interval: Duration) -> Duration {
    interval * RENEWALS_PER_TTL
}

/// How long a holder that could not renew still acts as one: 3/4 of the
/// TTL, so that it stops before anyone else may take over at the TTL.
pub(crate) fn step_down_after(ttl: Duration) -> Duration {
    ttl * 3 / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_and_step_down_fit_inside_the_ttl() {
        let ttl = Duration::from_millis(900);
        assert_eq!(renew_every(ttl), Duration::from_millis(300));
        assert_eq!(ttl_for(renew_every(ttl)), ttl);
        let step_down = step_down_after(ttl);
        assert!(step_down > renew_every(ttl) * 2 && step_down < ttl);
    }
}
