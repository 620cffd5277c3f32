//! Exact deadlines: `next_deadline` reports only what a tick then does, so a
//! leader woken at it never finds nothing to do, and one that ticked never
//! sees a deadline that is due already.

use std::sync::atomic::Ordering;

use super::*;

/// How often the workers beat here: no window, timeout or grace of
/// `config()` is a multiple of it, so the calculator's own deadlines fall
/// between beats and are seen to be kept.
const BEAT: Duration = Duration::from_millis(70);

impl World {
    /// A world whose strategy counts its calls (and fails the first
    /// `failures`), as `World::new` otherwise.
    fn counting(n_parts: usize, failures: usize) -> (Self, Arc<FailsThenWorks>) {
        let strategy = Arc::new(FailsThenWorks {
            failures,
            calls: Default::default(),
        });
        let mut w = World::new(n_parts);
        w.calc = Calculator::new(config(), strategy.clone(), "w0", 1, w.now, parts(n_parts));
        (w, strategy)
    }

    /// Runs for `for_` the way the leader node does: the calculator ticks
    /// when the workers beat (every [`BEAT`]) and otherwise only at its own
    /// deadline. After every tick no deadline may be due already; a tick at
    /// a deadline must have changed something: written, cleared or reported
    /// something, changed the phase, or asked the strategy again. Returns
    /// what each deadline tick did, and when.
    fn run_exact(&mut self, for_: Duration, strategy: &FailsThenWorks) -> Vec<Woken> {
        let end = self.now + for_;
        let mut next_beat = self.now + BEAT;
        let mut woken = Vec::new();
        while self.now < end {
            // Due already only when an input outside this loop (a join, a
            // new calculator) made it so.
            let deadline = self.calc.next_deadline();
            let at = deadline
                .map_or(next_beat, |d| d.min(next_beat))
                .max(self.now);
            self.now = at;
            let beat = at == next_beat;
            if beat {
                self.beat_all();
                next_beat += BEAT;
            }
            let phase = self.calc.phase();
            let calls = strategy.calls.load(Ordering::SeqCst);
            let outs = self.calc.tick(at);
            let did: Vec<&'static str> = outs.iter().map(kind_of).collect();
            self.apply(outs);
            let after = self.calc.next_deadline();
            assert!(
                after.is_none_or(|d| d > at),
                "a tick at {at:?} left {after:?} due (before: {deadline:?})"
            );
            if beat {
                continue;
            }
            let asked = strategy.calls.load(Ordering::SeqCst) > calls;
            let phased = self.calc.phase() != phase;
            assert!(
                !did.is_empty() || phased || asked,
                "woken at its deadline {at:?} for nothing (phase {phase:?})"
            );
            if did.is_empty() {
                // Asked a failing strategy again (the same error is not
                // reported twice), or only moved to another phase.
                woken.push((at, if asked { "asked" } else { "phase" }));
            }
            woken.extend(did.into_iter().map(|d| (at, d)));
        }
        woken
    }
}

/// When a deadline tick ran, and one thing it did.
type Woken = (Instant, &'static str);

/// Whether a deadline tick did `what`.
fn did(woken: &[Woken], what: &str) -> bool {
    woken.iter().any(|(_, d)| *d == what)
}

fn kind_of(out: &Output) -> &'static str {
    match out {
        Output::Publish(_) => "publish",
        Output::Clear(_) => "clear",
        Output::Rebalanced { .. } => "rebalanced",
        Output::Died(_) => "died",
        Output::Report(_) => "report",
        Output::Resign => "resign",
    }
}

#[test]
fn an_idle_stable_leader_has_no_due_deadline() {
    let mut w = World::started(12, &["w0", "w1", "w2"]);
    w.run(MS * 1000);
    assert_eq!(w.calc.phase(), Phase::Stable);
    // Every member was just heard: a verdict (ttl + grace from now) would
    // come after three silent intervals, when this leader is blind; so
    // only the next heartbeat, an input, can change anything.
    assert_eq!(w.calc.next_deadline(), None);
    let silent = w.calc.tick(w.now + MS * 50);
    assert!(silent.is_empty(), "{silent:?}");
    assert_eq!(w.calc.next_deadline(), None);
}

#[test]
fn a_blind_leader_has_no_due_deadline() {
    let mut w = World::started(6, &["w0", "w1", "w2"]);
    let kinds = w.kinds.len();
    // Nobody is heard from any more, the leader's own beats included.
    let saved = std::mem::take(&mut w.workers);
    w.run(MS * 1000);
    assert_eq!(w.kinds.len(), kinds, "no verdict while blind");
    assert_eq!(w.calc.next_deadline(), None, "long past every verdict");
    // Heard again: nobody was dead, and nothing is due.
    w.workers = saved;
    w.run(MS * 1000);
    assert_eq!(w.kinds.len(), kinds, "{:?}", w.kinds);
    assert_eq!(w.calc.next_deadline(), None);
}

#[test]
fn a_worker_silent_among_beating_ones_gets_its_verdict_on_time() {
    let (mut w, strategy) = World::counting(9, 0);
    for n in ["w0", "w1", "w2"] {
        w.join(n);
    }
    w.run_exact(MS * 1500, &strategy);
    w.workers.remove("w2");
    let last_beat = w.last_beat.expect("beat");
    // The verdict comes at its own deadline, just past ttl + grace after
    // w2's last beat, not at whichever beat of the others follows it.
    let woken = w.run_exact(MS * 1000, &strategy);
    let died = woken.iter().find(|(_, d)| *d == "died").map(|(t, _)| *t);
    assert_eq!(died, Some(last_beat + MS * 401), "{woken:?}");
    assert!(!w.calc.members().contains(&"w2".to_string()));
    assert_eq!(w.kinds.last(), Some(&RebalanceKind::Emergency));
}

#[test]
fn every_reached_deadline_changes_something() {
    let (mut w, strategy) = World::counting(12, 0);
    for n in ["w0", "w1", "w2"] {
        w.join(n);
    }
    // Cold start: the window closes at a deadline, not at a beat.
    let mut woken = w.run_exact(MS * 1050, &strategy);
    assert!(did(&woken, "rebalanced"), "cold start: {woken:?}");
    // A joiner waits out its window; a stalled handoff times out.
    w.stalled.insert("w1".into());
    w.join("a3");
    woken.extend(w.run_exact(MS * 3000, &strategy));
    assert!(did(&woken, "report"), "handoff timeout: {woken:?}");
    w.stalled.clear();
    // A death, then a blind spell and recovery.
    w.workers.remove("a3");
    woken.extend(w.run_exact(MS * 1000, &strategy));
    assert!(did(&woken, "died"), "{woken:?}");
    let saved = std::mem::take(&mut w.workers);
    woken.extend(w.run_exact(MS * 1000, &strategy));
    w.workers = saved;
    // A worker leaves, then deletes its key.
    w.leaving.insert("w2".into());
    woken.extend(w.run_exact(MS * 600, &strategy));
    w.workers.remove("w2");
    w.leaving.clear();
    woken.extend(w.run_exact(MS * 600, &strategy));
    w.assert_each_owned_once(12);
    // A fleet restart: everyone gone, back under the same IDs.
    let names: Vec<String> = w.workers.keys().cloned().collect();
    let kinds = w.kinds.len();
    w.workers.clear();
    w.join("x9");
    woken.extend(w.run_exact(MS * 450, &strategy));
    for n in &names {
        w.join(n);
    }
    woken.extend(w.run_exact(MS * 3000, &strategy));
    assert!(
        w.kinds[kinds..].contains(&RebalanceKind::Restart),
        "{:?}",
        w.kinds
    );
    w.assert_each_owned_once(12);
}

#[test]
fn a_failing_strategy_is_asked_again_only_at_its_retries() {
    let (mut w, strategy) = World::counting(6, 3);
    w.join("w0");
    let woken = w.run_exact(MS * 4000, &strategy);
    assert_eq!(strategy.calls.load(Ordering::SeqCst), 4, "{woken:?}");
    assert_eq!(
        woken.iter().filter(|(_, k)| *k == "report").count(),
        1,
        "{woken:?}"
    );
    w.assert_each_owned_once(6);
}

#[test]
fn an_operator_request_during_a_new_leaders_settling_comes_due_when_it_settled() {
    let mut w = World::started(6, &["w0", "w1"]);
    let records = w.records();
    let top = w.calc.version();
    let strategy = Arc::new(FailsThenWorks {
        failures: 0,
        calls: Default::default(),
    });
    let mut next = Calculator::new(config(), strategy.clone(), "w1", 2, w.now, parts(6));
    next.adopt(w.now, &records, top);
    w.calc = next;
    w.calc.request_rebalance();
    let settled = w.now + MS * 300 + MS * 100 + MS * 50;
    let woken = w.run_exact(MS * 1000, &strategy);
    assert_eq!(strategy.calls.load(Ordering::SeqCst), 1, "{woken:?}");
    assert!(did(&woken, "rebalanced"), "{woken:?}");
    assert!(w.now >= settled);
}
