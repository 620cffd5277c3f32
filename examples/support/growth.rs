//! `placement_report -- --growth`: how BoundedLoad's unconstrained cold and
//! sticky-join calls grow from 10,000 to 1,000,000 partitions, in the fresh
//! process a leader is, with the minor page faults each call takes.
//!
//! The fastest of several calls is reported (the others only add the
//! machine's noise); faults are the process's minor faults over all calls
//! of a size, divided by the calls, read from `/proc/self/stat` (Linux;
//! elsewhere they print as "n/a"). Faults show what the allocator gives
//! back to the kernel between calls and takes again: compare a run with
//! `GLIBC_TUNABLES=glibc.malloc.trim_threshold=4000000000:glibc.malloc.mmap_threshold=4000000000`.

use std::time::Instant;

use parti::strategy::{AssignmentStrategy, BoundedLoad};
use parti::{Error, Partition, Placement};

/// The process's minor page faults so far (field 10 of `/proc/self/stat`).
fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count after its ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(7)?.parse().ok()
}

/// (fastest call in ms, faults per call) of `calls` runs of `f`, each
/// result dropped inside the timing as a caller would drop it.
fn measure(
    calls: usize,
    mut f: impl FnMut() -> Result<Placement, Error>,
) -> Result<(f64, String), Error> {
    let faults_before = minor_faults();
    let mut best = f64::INFINITY;
    for _ in 0..calls {
        let t = Instant::now();
        drop(f()?);
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    let faults = match (faults_before, minor_faults()) {
        (Some(a), Some(b)) => format!("{}", (b - a) / calls as u64),
        _ => "n/a".to_string(),
    };
    Ok((best, faults))
}

/// Prints the growth table of `docs/strategies.md`.
pub fn report(
    partitions: impl Fn(usize) -> Vec<Partition>,
    workers: impl Fn(usize) -> Vec<String>,
) -> Result<(), Error> {
    println!();
    println!("| size | cold (fastest) | faults per cold call | join (fastest) | faults per join call | growth cold / join |");
    println!("|---|---|---|---|---|---|");
    let s = BoundedLoad::default();
    let none = Placement::new();
    let mut last: Option<(f64, f64)> = None;
    for (n, w, calls) in [
        (10_000, 200, 200),
        (100_000, 1_000, 50),
        (1_000_000, 10_000, 12),
    ] {
        let (parts, ids) = (partitions(n), workers(w));
        let mut joined = ids.clone();
        joined.push("worker-new".to_string());
        let before = s.assign(&ids, &parts, &none)?;
        let (cold, cold_faults) = measure(calls, || s.assign(&ids, &parts, &none))?;
        let (join, join_faults) = measure(calls, || s.assign(&joined, &parts, &before))?;
        let growth = last.map_or("".to_string(), |(c, j)| {
            format!("{:.1} × / {:.1} ×", cold / c, join / j)
        });
        println!(
            "| {}K×{w} | {cold:.2} ms | {cold_faults} | {join:.2} ms | {join_faults} | {growth} |",
            n / 1000
        );
        last = Some((cold, join));
    }
    Ok(())
}
