//! The consumer's connection, with a flusher thread of its own.
//!
//! The `nats` 0.26 writer sends buffered bytes at most every 5 ms (trap 7),
//! so a request takes ~5 ms and a cold start's consumer resets add up; and
//! its `flush_timeout` waits for the PONG without a deadline, so the fetch
//! thread must never flush itself (a frozen server would hold `stop()`). A
//! small thread flushes when kicked; callers wait with their own deadlines.

use std::io;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

pub(super) struct Link {
    pub conn: nats::Connection,
    kick: Sender<()>,
}

impl Link {
    /// Starts the flusher; it ends with the last `Link` (after the flush it
    /// may be waiting in).
    pub fn new(conn: nats::Connection, op_timeout: Duration) -> Link {
        let (kick, kicks) = crossbeam_channel::bounded::<()>(1);
        let flusher = conn.clone();
        let spawned = std::thread::Builder::new()
            .name("parti-js-flush".into())
            .spawn(move || {
                while kicks.recv().is_ok() {
                    let _ = flusher.flush_timeout(op_timeout);
                }
            });
        if let Err(e) = spawned {
            // Still correct without it, only slower (5 ms writer cadence).
            log::warn!("parti: cannot start the consumer's flusher thread: {e}");
        }
        Link { conn, kick }
    }

    /// Asks the flusher to send what is buffered now.
    pub fn kick(&self) {
        // Full: a flush is already due.
        let _ = self.kick.try_send(());
    }

    /// A request answered within `timeout`, or `TimedOut`.
    pub fn request(
        &self,
        subject: &str,
        body: &[u8],
        timeout: Duration,
    ) -> io::Result<nats::Message> {
        let deadline = Instant::now() + timeout;
        let inbox = self.conn.new_inbox();
        let sub = self.conn.subscribe(&inbox)?;
        self.conn.publish_request(subject, &inbox, body)?;
        self.kick();
        sub.next_timeout(deadline.saturating_duration_since(Instant::now()))
    }
}
