//! The KV layer on its own: four threads race for a leader key with
//! `create`, then increment a shared counter with compare-and-set while a
//! watch prints what happens.
//!
//! Run with `bash scripts/demo.sh` (starts a nats-server), or
//! `NATS_URL=nats://127.0.0.1:4222 cargo run --example kv_demo`.

use std::thread;
use std::time::Duration;

use parti::store::nats::{connect, NatsBackend};
use parti::store::{BucketConfig, KvBackend, KvError, KvStore, WatchEvent};

const WORKERS: usize = 4;
const INCREMENTS: u64 = 25;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let backend = NatsBackend::new(connect(&url)?, Duration::from_secs(2));
    let store = backend.open(&BucketConfig::new("kv-demo", None))?;
    store.delete("leader", None)?;
    store.put("counter", b"0")?;

    let watch = store.watch(None)?;
    let printer = thread::spawn(move || {
        let mut puts = 0;
        while let Ok(event) = watch.events().recv_timeout(Duration::from_secs(2)) {
            match event {
                WatchEvent::Put(e) if e.key == "leader" => println!(
                    "watch: leader is {} (revision {})",
                    String::from_utf8_lossy(&e.value),
                    e.revision
                ),
                WatchEvent::Put(_) => puts += 1,
                WatchEvent::Delete { key, .. } => println!("watch: {key} deleted"),
                WatchEvent::Synced => println!("watch: replay done, now live"),
            }
        }
        puts
    });

    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let store = store.clone();
            thread::spawn(move || work(i, store.as_ref()))
        })
        .collect();
    let mut conflicts = 0;
    for w in workers {
        conflicts += w.join().map_err(|_| "worker panicked")??;
    }

    let counter = store.get("counter")?.ok_or("counter vanished")?;
    println!(
        "counter = {} after {} increments ({conflicts} CAS conflicts retried)",
        String::from_utf8_lossy(&counter.value),
        WORKERS as u64 * INCREMENTS
    );
    let puts = printer.join().map_err(|_| "printer panicked")?;
    println!("watch saw {puts} counter updates");
    Ok(())
}

/// Races for the leader key, then increments the counter by CAS.
/// Returns how many CAS attempts lost to another thread.
fn work(i: usize, store: &dyn KvStore) -> Result<u64, KvError> {
    let me = format!("worker-{i}");
    match store.create("leader", me.as_bytes()) {
        Ok(_) => println!("{me}: I am the leader"),
        Err(e) if e.is_conflict() => {}
        Err(e) => return Err(e),
    }
    let mut conflicts = 0;
    for _ in 0..INCREMENTS {
        loop {
            let current = store
                .get("counter")?
                .ok_or(KvError::NotFound("counter".into()))?;
            let n: u64 = String::from_utf8_lossy(&current.value).parse().unwrap_or(0);
            match store.update("counter", (n + 1).to_string().as_bytes(), current.revision) {
                Ok(_) => break,
                Err(e) if e.is_conflict() => conflicts += 1,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(conflicts)
}
