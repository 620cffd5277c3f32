//! Taking a simulated thread's watch events the way the runtime's `Rewatch`
//! does: everything queued, and whether the watch ended (then it is dropped,
//! to be reopened) and why.

use crate::store::{Watch, WatchEvent};

/// How a watch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Still open.
    No,
    /// Closed (the connection, or the store ended it for another reason).
    Closed,
    /// The store forgot what it had delivered ([`Watch::store_forgot`]).
    Forgot,
}

/// The events queued on `watch`; a watch that ended is taken out.
pub(crate) fn drain(watch: &mut Option<Watch>) -> (Vec<WatchEvent>, Ended) {
    let Some(w) = watch.as_ref() else {
        return (Vec::new(), Ended::No);
    };
    let mut events = Vec::new();
    loop {
        match w.events().try_recv() {
            Ok(ev) => events.push(ev),
            Err(crossbeam_channel::TryRecvError::Empty) => return (events, Ended::No),
            Err(crossbeam_channel::TryRecvError::Disconnected) => break,
        }
    }
    let ended = match watch.take() {
        Some(w) if w.store_forgot() => Ended::Forgot,
        _ => Ended::Closed,
    };
    (events, ended)
}
