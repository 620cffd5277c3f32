//! A downstream store that fences writes by token, as the docs of
//! `Assignment::token` tell users to build one: per partition it keeps the
//! highest token it has seen and rejects lower ones. Replaying every grant
//! of a run in time order shows whether it would ever have rejected a
//! rightful new owner (a token that went backwards) or could not tell a new
//! owner from the old one (the same token for a different owner).

use std::collections::BTreeMap;

use super::Event;

/// One partition granted: when (the callback's start, wall-clock micros),
/// to whom, with which token.
struct Grant {
    at: u64,
    owner: String,
    partition: String,
    token: u64,
}

/// Every grant recorded by the managers' callbacks (`parts`: label and
/// events of each manager, as `Recorded::part` gives them).
fn grants(parts: &[(String, Vec<Event>)]) -> Vec<Grant> {
    let mut out = Vec::new();
    for (owner, events) in parts {
        for e in events.iter().filter(|e| e["event"] == "assignment") {
            let Some(at) = e["t_begin"].as_u64() else {
                continue;
            };
            for p in e["added"].as_array().into_iter().flatten() {
                let Some(p) = p.as_str() else { continue };
                let token = e["tokens"][p]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{owner}: no token for {p} in {e}"));
                out.push(Grant {
                    at,
                    owner: owner.clone(),
                    partition: p.to_string(),
                    token,
                });
            }
        }
    }
    out.sort_by_key(|g| g.at);
    out
}

/// Each grant the fenced store would mishandle, described.
pub fn regressions(parts: &[(String, Vec<Event>)]) -> Vec<String> {
    let mut highest: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut out = Vec::new();
    for g in grants(parts) {
        if let Some((token, owner)) = highest.get(&g.partition) {
            if g.token < *token || (g.token == *token && g.owner != *owner) {
                out.push(format!(
                    "{} granted to {} with token {} after {} held it with token {}",
                    g.partition, g.owner, g.token, owner, token
                ));
            }
            if g.token <= *token {
                continue;
            }
        }
        highest.insert(g.partition.clone(), (g.token, g.owner.clone()));
    }
    out
}

/// How many grants were replayed (so that a test can show it checked some).
pub fn grant_count(parts: &[(String, Vec<Event>)]) -> usize {
    grants(parts).len()
}

/// The promise through a fault, checked on every manager of a run (running
/// and stopped): no partition had two owners at once, and a downstream
/// fencing by token never rejected an owner — with more than `n` grants
/// replayed, so that the check saw some.
pub fn assert_single_owners_and_rising_tokens<'a>(
    managers: impl IntoIterator<Item = &'a super::Recorded>,
    n: usize,
) {
    let parts: Vec<_> = managers.into_iter().map(|r| r.part()).collect();
    let ledger = super::ledger::Ledger::of_events(&parts);
    assert!(ledger.overlaps().is_empty(), "{:?}", ledger.overlaps());
    let regressions = regressions(&parts);
    assert!(regressions.is_empty(), "tokens went back: {regressions:?}");
    let grants = grant_count(&parts);
    assert!(grants > n, "only {grants} grants replayed");
}
