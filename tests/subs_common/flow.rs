//! A steady flow of numbered messages across the partitions, and what became
//! of each message: lost, handled once, handled again (and why), delivery
//! latency, order within its partition.
#![allow(dead_code)]
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::child::{unix_micros, Helper, WorkerProcess, WorkerSpec};

/// One published message.
#[derive(Clone, Debug)]
pub struct Published {
    pub partition: String,
    pub msg: u64,
    /// Unix micros just before the publish.
    pub t: u64,
}

/// Publishes message `n` to partition `n % partitions` at a steady rate,
/// from its own thread, until stopped (or `limit` passes).
pub struct Publisher {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Published>>>,
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

impl Publisher {
    pub fn start(spec: &WorkerSpec, per_second: u64, limit: Duration) -> Res<Publisher> {
        let nc = nats::connect(&spec.url)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spec = spec.clone();
        let handle = std::thread::spawn(move || publish(&nc, &spec, per_second, limit, &flag));
        Ok(Publisher {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops and returns what was published (for JetStream: what the
    /// server acknowledged as stored).
    pub fn finish(mut self) -> Vec<Published> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

fn publish(
    nc: &nats::Connection,
    spec: &WorkerSpec,
    per_second: u64,
    limit: Duration,
    stop: &AtomicBool,
) -> Vec<Published> {
    let ids = spec.partition_ids();
    // JetStream acks come back on `<inbox>.<n>`: a message counts once
    // stored.
    let inbox = nc.new_inbox();
    let stored: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let acks = match spec.helper {
        Helper::JetStream => nc.subscribe(&format!("{inbox}.*")).ok(),
        Helper::Core => None,
    };
    let collector = acks.clone().map(|sub| {
        let stored = stored.clone();
        std::thread::spawn(move || {
            while let Ok(m) = sub.next_timeout(Duration::from_secs(5)) {
                let ok = String::from_utf8_lossy(&m.data).contains("\"seq\"");
                let n = m.subject.rsplit('.').next().and_then(|n| n.parse().ok());
                if let (true, Some(n)) = (ok, n) {
                    if let Ok(mut s) = stored.lock() {
                        s.insert(n);
                    }
                }
            }
        })
    });
    let mut out = Vec::new();
    let started = Instant::now();
    let period = Duration::from_micros(1_000_000 / per_second.max(1));
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < limit {
        let partition = ids[(n as usize) % ids.len()].clone();
        let subject = spec.subject(&partition);
        let t = unix_micros();
        let sent = match spec.helper {
            Helper::JetStream => {
                nc.publish_request(&subject, &format!("{inbox}.{n}"), n.to_string())
            }
            Helper::Core => nc.publish(&subject, n.to_string()),
        };
        let _ = nc.flush_timeout(Duration::from_secs(1));
        if sent.is_ok() {
            out.push(Published {
                partition,
                msg: n,
                t,
            });
        }
        n += 1;
        let next = started + period * (n as u32);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    if let (Some(sub), Some(c)) = (acks, collector) {
        // Acks of the last messages are on their way: a bounded wait.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && stored.lock().map(|s| s.len()).unwrap_or(0) < out.len() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = sub.unsubscribe();
        let _ = c.join();
        let stored = stored.lock().map(|s| s.clone()).unwrap_or_default();
        out.retain(|p| stored.contains(&p.msg));
    }
    out
}

/// What became of the flow.
#[derive(Debug, Default)]
pub struct Outcome {
    /// (partition, message, publish time, first handling time, handlers).
    pub messages: Vec<Fate>,
}

#[derive(Clone, Debug)]
pub struct Fate {
    pub partition: String,
    pub msg: u64,
    pub published: u64,
    /// (worker label, unix micros) of each handler call, in time order.
    pub handled: Vec<(String, u64)>,
}

impl Fate {
    /// Delivery latency of the first handler call, in microseconds.
    pub fn latency_us(&self) -> Option<u64> {
        self.handled
            .first()
            .map(|(_, t)| t.saturating_sub(self.published))
    }
}

impl Outcome {
    pub fn of(published: &[Published], workers: &[&WorkerProcess]) -> Outcome {
        let mut by_msg: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
        for w in workers {
            for (_, n, t) in w.handled() {
                by_msg.entry(n).or_default().push((w.label.clone(), t));
            }
        }
        let messages = published
            .iter()
            .map(|p| {
                let mut handled = by_msg.remove(&p.msg).unwrap_or_default();
                handled.sort_by_key(|(_, t)| *t);
                Fate {
                    partition: p.partition.clone(),
                    msg: p.msg,
                    published: p.t,
                    handled,
                }
            })
            .collect();
        Outcome { messages }
    }

    pub fn lost(&self) -> Vec<&Fate> {
        self.messages
            .iter()
            .filter(|f| f.handled.is_empty())
            .collect()
    }

    pub fn duplicates(&self) -> Vec<&Fate> {
        self.messages
            .iter()
            .filter(|f| f.handled.len() > 1)
            .collect()
    }

    /// Duplicates not explained by a crash: the first handler call was not
    /// made by a worker that was killed afterwards (`dead` labels).
    pub fn unexplained_duplicates(&self, dead: &BTreeSet<String>) -> Vec<&Fate> {
        self.duplicates()
            .into_iter()
            .filter(|f| !dead.contains(&f.handled[0].0))
            .collect()
    }

    /// Messages whose first handling came before that of an earlier message
    /// of the same partition (order broken other than by a redelivery).
    pub fn out_of_order(&self) -> Vec<String> {
        let mut last: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        let mut bad = Vec::new();
        for f in &self.messages {
            let Some((_, t)) = f.handled.first() else {
                continue;
            };
            if let Some((n, prev)) = last.get(f.partition.as_str()) {
                if t < prev {
                    bad.push(format!("{}#{} handled before #{n}", f.partition, f.msg));
                }
            }
            last.insert(&f.partition, (f.msg, *t));
        }
        bad
    }

    /// Messages that count in `[from, to)` (unix micros), of the given
    /// partitions (or of all others, with `inside == false`). A message
    /// counts when it was first handled (a pause shows in the phase that
    /// caused it, not in the one the message was published in), or when it
    /// was published if it never was.
    pub fn select<'a>(
        &'a self,
        from: u64,
        to: u64,
        partitions: &'a BTreeSet<String>,
        inside: bool,
    ) -> impl Iterator<Item = &'a Fate> + 'a {
        self.messages.iter().filter(move |f| {
            let at = f.handled.first().map_or(f.published, |(_, t)| *t);
            at >= from && at < to && partitions.contains(&f.partition) == inside
        })
    }
}

/// p50, p99 and max of latencies in microseconds (zeros when empty).
pub fn percentiles(mut v: Vec<u64>) -> (u64, u64, u64) {
    if v.is_empty() {
        return (0, 0, 0);
    }
    v.sort_unstable();
    let at = |q: f64| v[(((v.len() - 1) as f64) * q).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}
