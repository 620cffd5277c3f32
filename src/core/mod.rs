//! The pure coordination core: decisions over time, with `now` passed in.
//!
//! Nothing here reads the clock, sleeps, spawns threads or talks to NATS, so
//! every rule is unit-tested with explicit instants and the simulation can run
//! thousands of workers in virtual time.

pub(crate) mod calculator;
pub(crate) mod claim;
pub(crate) mod departure;
pub(crate) mod election;
pub(crate) mod fence;
pub(crate) mod heartbeat;
pub(crate) mod leader;
pub(crate) mod lease;
pub(crate) mod ledger;
pub(crate) mod node;
pub(crate) mod ops;
pub(crate) mod placement;
pub(crate) mod worker;

#[cfg(test)]
mod calculator_tests;
