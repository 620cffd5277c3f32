//! The pure coordination core: decisions over time, with `now` passed in.
//!
//! Nothing here reads the clock, sleeps, spawns threads or talks to NATS, so
//! every rule is unit-tested with explicit instants and the simulation can run
//! thousands of workers in virtual time.

pub mod calculator;
pub mod claim;
pub mod election;
pub mod fence;
pub mod heartbeat;
pub mod leader;
pub mod lease;
pub mod ledger;
pub(crate) mod node;
pub mod ops;
pub mod placement;
pub mod worker;

#[cfg(test)]
mod calculator_tests;
