//! A group across three labelled zones on a real nats-server: every
//! partition that prefers a zone stays in it through a rolling restart and
//! while another zone is lost; a partition that requires the lost zone is
//! parked (in `_meta`), or spilled to any worker after `label_spill_grace`
//! and sent home when its zone returns; and `on_prepare` reaches the future
//! owner before every planned grant (a ledger of times from the callbacks).

mod group;
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use group::{fast_config, wait_until, Observer};
use parti::source::StaticSource;
use parti::{Config, Manager, Partition, RebalanceKind};
use support::{NatsServer, TcpProxy};

const ZONES: [&str; 3] = ["a", "b", "c"];

/// What a manager's callbacks saw, in order, with the time each began.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    prepare: bool,
    reason: Option<RebalanceKind>,
    partitions: Vec<String>,
}

struct Member {
    manager: Manager,
    zone: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Member {
    fn owned(&self) -> Vec<String> {
        self.manager
            .assignment()
            .partitions()
            .iter()
            .map(|p| p.id().to_string())
            .collect()
    }
}

/// Per zone: two partitions that prefer it and one that requires it; and
/// three free ones. 12 partitions for 6 workers: every balanced placement
/// leaves room for each zone's three partitions on its two workers, and on
/// one of them while the other restarts.
fn zone_partitions() -> Vec<Partition> {
    let mut out = Vec::new();
    for z in ZONES {
        for i in 0..2 {
            out.push(Partition::new(format!("pref-{z}-{i}")).prefer_label("zone", z));
        }
        out.push(Partition::new(format!("only-{z}")).require_label("zone", z));
    }
    out.extend((0..3).map(|i| Partition::new(format!("free-{i}"))));
    out
}

/// The zone a partition belongs to, if any.
fn home(partition: &str) -> Option<&str> {
    let rest = partition
        .strip_prefix("pref-")
        .or_else(|| partition.strip_prefix("only-"))?;
    Some(&rest[..1])
}

fn start(
    url: &str,
    group: &str,
    zone: &'static str,
    config: &Config,
    partitions: &[Partition],
    preferred: Option<&str>,
) -> Member {
    spawn(url, group, (zone, 1), config, partitions, preferred, false)
}

/// Like `start`; with `spawn_only`, returns before the first assignment
/// (so that a whole group joins within one cold-start window).
fn spawn(
    url: &str,
    group: &str,
    (zone, capacity): (&'static str, u32),
    config: &Config,
    partitions: &[Partition],
    preferred: Option<&str>,
    spawn_only: bool,
) -> Member {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (grants, prepares) = (seen.clone(), seen.clone());
    let ids = |ps: &[Partition]| ps.iter().map(|p| p.id().to_string()).collect::<Vec<_>>();
    let nc = parti::store::nats::connect(url).expect("connect");
    let mut b = Manager::builder(nc, group)
        .config(config.clone())
        .label("zone", zone)
        .capacity(capacity)
        .partitions(StaticSource::new(partitions.to_vec()))
        .on_assignment_changed(move |c| {
            grants.lock().unwrap().push(Seen {
                at: Instant::now(),
                prepare: false,
                reason: c.assignment().reason(),
                partitions: ids(c.added()),
            })
        })
        .on_prepare(move |ps| {
            prepares.lock().unwrap().push(Seen {
                at: Instant::now(),
                prepare: true,
                reason: None,
                partitions: ids(ps),
            })
        });
    if let Some(id) = preferred {
        b = b.preferred_id(id);
    }
    Member {
        manager: if spawn_only { b.spawn() } else { b.start() }.expect("start"),
        zone,
        seen,
    }
}

/// Owner of every partition now (several owners are all listed).
fn owners(members: &[&Member]) -> BTreeMap<String, Vec<&'static str>> {
    let mut out: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for m in members {
        for p in m.owned() {
            out.entry(p).or_default().push(m.zone);
        }
    }
    out
}

/// Every one of `expected` owned exactly once, nothing else, and every
/// member busy.
fn settled(members: &[&Member], expected: &[&str]) -> bool {
    let o = owners(members);
    o.len() == expected.len()
        && expected
            .iter()
            .all(|p| o.get(*p).is_some_and(|z| z.len() == 1))
        && members.iter().all(|m| !m.manager.assignment().is_empty())
}

/// Partitions that a worker key was written with in `window` although they
/// belong to another zone than the worker's (those of zone `exempt` aside).
fn out_of_zone(
    observer: &Observer,
    zone_of: &BTreeMap<String, &str>,
    window: std::ops::Range<Instant>,
    exempt: Option<&str>,
) -> Vec<String> {
    let mut bad = Vec::new();
    let writes = observer.writes();
    for (_, worker, record) in writes.into_iter().filter(|(t, _, _)| window.contains(t)) {
        let Some(zone) = zone_of.get(&worker) else {
            continue;
        };
        for p in &record.partitions {
            match home(&p.id) {
                Some(h) if h != *zone && Some(h) != exempt => bad.push(format!(
                    "{} on {worker} (zone {zone}) at v{}",
                    p.id, record.version
                )),
                _ => {}
            }
        }
    }
    bad
}

/// Every partition that has a zone is owned by a worker of that zone now.
fn all_home(members: &[&Member]) -> bool {
    members.iter().all(|m| {
        m.owned()
            .iter()
            .all(|p| home(p).is_none_or(|h| h == m.zone))
    })
}

/// Every partition granted by a planned handoff to `m` was announced to its
/// `on_prepare` before; returns how many grants were checked and the
/// shortest lead (announcement to grant).
fn prepared_before_grants(m: &Member) -> (usize, Option<Duration>) {
    let seen = m.seen.lock().unwrap().clone();
    let mut checked = 0;
    let mut shortest: Option<Duration> = None;
    for (i, grant) in seen.iter().enumerate() {
        if grant.prepare || grant.reason != Some(RebalanceKind::Handoff) {
            continue;
        }
        for p in &grant.partitions {
            let told = seen[..i]
                .iter()
                .rev()
                .find(|s| s.prepare && s.partitions.contains(p))
                .unwrap_or_else(|| {
                    panic!(
                        "{p} granted to {} at a handoff without on_prepare before: {seen:?}",
                        m.manager.worker_id()
                    )
                });
            let lead = grant.at - told.at;
            shortest = Some(shortest.map_or(lead, |s| s.min(lead)));
            checked += 1;
        }
    }
    (checked, shortest)
}

fn view(members: &[Member]) -> Vec<&Member> {
    members.iter().collect()
}

fn stop_all(members: Vec<Member>) {
    std::thread::scope(|s| {
        for m in &members {
            s.spawn(|| {
                let _ = m.manager.stop();
            });
        }
    });
}

#[test]
fn preferred_partitions_stay_in_their_zone_through_a_rolling_restart_and_a_zone_loss() {
    let server = NatsServer::start();
    let zone_c = TcpProxy::start(server.addr());
    let config = fast_config();
    let parts = zone_partitions();
    let all: Vec<String> = parts.iter().map(|p| p.id().to_string()).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let observer = Observer::new(&server.url(), "zones");
    let url = |z: &str| {
        if z == "c" {
            zone_c.url()
        } else {
            server.url()
        }
    };
    // The whole group joins within the cold-start window.
    let mut members: Vec<Member> = Vec::new();
    for z in ["a", "a", "b", "b", "c", "c"] {
        members.push(spawn(&url(z), "zones", (z, 1), &config, &parts, None, true));
    }
    let zone_of: BTreeMap<String, &str> = members
        .iter()
        .map(|m| (m.manager.worker_id().to_string(), m.zone))
        .collect();
    assert!(
        wait_until(Duration::from_secs(15), || settled(&view(&members), &all)),
        "cold start settles: {:?}",
        owners(&view(&members))
    );
    let formed = Instant::now();
    let bad = out_of_zone(
        &observer,
        &zone_of,
        formed - Duration::from_secs(60)..formed,
        None,
    );
    assert!(bad.is_empty(), "out of zone at the cold start: {bad:?}");
    assert!(all_home(&view(&members)));

    // Rolling restart of one worker per zone; the leader stays (a failover
    // is another test's subject).
    let restarted: Vec<usize> = ZONES
        .iter()
        .filter_map(|z| {
            members
                .iter()
                .position(|m| m.zone == *z && !m.manager.is_leader())
        })
        .collect();
    // While a worker is away, its zone's partitions may have to wait on
    // another zone (its zone peer can be at its balanced share, and
    // BoundedLoad does not move a third partition to make room); the other
    // zones' partitions stay home throughout, and every step ends with
    // everything home again.
    for i in restarted {
        let step = Instant::now();
        let old = members.remove(i);
        let (id, zone) = (old.manager.worker_id().to_string(), old.zone);
        old.manager.stop().expect("graceful stop");
        let back = start(&url(zone), "zones", zone, &config, &parts, Some(&id));
        assert_eq!(
            back.manager.worker_id(),
            id,
            "the restarted worker gets its ID back"
        );
        members.insert(i, back);
        assert!(
            wait_until(Duration::from_secs(15), || settled(&view(&members), &all)
                && all_home(&view(&members))),
            "settles with everything home after restarting {id}: {:?}",
            owners(&view(&members))
        );
        let bad = out_of_zone(&observer, &zone_of, step..Instant::now(), Some(zone));
        assert!(bad.is_empty(), "out of zone while {id} restarts: {bad:?}");
    }
    let lost = Instant::now();

    // Zone c is cut off: its workers fence themselves and are declared dead;
    // only-c, which requires zone c, is parked; pref-a/b stay home.
    zone_c.cut();
    let survivors: Vec<&Member> = members.iter().filter(|m| m.zone != "c").collect();
    let rest: Vec<&str> = all.iter().copied().filter(|p| *p != "only-c").collect();
    let parked = || {
        observer
            .metas()
            .last()
            .is_some_and(|m| m.parked == ["only-c"])
    };
    assert!(
        wait_until(Duration::from_secs(15), || parked()
            && settled(&survivors, &rest)),
        "zone c lost: only-c parked, the rest on zones a and b: {:?}, metas {:?}",
        owners(&survivors),
        observer.metas().last()
    );
    let bad = out_of_zone(&observer, &zone_of, lost..Instant::now(), Some("c"));
    assert!(bad.is_empty(), "out of zone during the zone loss: {bad:?}");
    // Parked means parked: it stays unowned (no spill grace configured)
    // for a whole planned-scale window.
    let owned = wait_until(config.planned_scale_window, || {
        !parked() || owners(&survivors).contains_key("only-c")
    });
    assert!(!owned, "only-c stays parked");

    // parti status shows the labels and what is parked.
    let server_url = server.url();
    let status = |json: bool| {
        let mut args = vec!["status", "--server", &server_url, "--group", "zones"];
        if json {
            args.push("--json");
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_parti"))
            .args(&args)
            .output()
            .expect("run parti status");
        assert!(out.status.success(), "parti status failed");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let s: serde_json::Value = serde_json::from_str(&status(true)).expect("status JSON");
    assert_eq!(s["assignment"]["parked"], serde_json::json!(["only-c"]));
    let first = members[0].manager.worker_id();
    let row = s["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["id"] == first))
        .expect("the first worker in parti status");
    assert_eq!(row["labels"]["zone"], members[0].zone);
    assert_eq!(row["capacity"], 1);
    let text = status(false);
    assert!(text.contains("parked     only-c"), "{text}");
    assert!(
        text.contains(&format!("zone={}", members[0].zone)),
        "{text}"
    );

    let mut checked = 0;
    for m in &members {
        let (n, lead) = prepared_before_grants(m);
        if n > 0 {
            println!(
                "{}: {n} planned grants, each after on_prepare (shortest lead {:?})",
                m.manager.worker_id(),
                lead
            );
        }
        checked += n;
    }
    assert!(
        checked > 0,
        "the rolling restart made planned grants to check"
    );
    zone_c.restore();
    stop_all(members);
}

#[test]
fn a_partition_of_a_lost_zone_spills_after_the_grace_and_goes_home_when_the_zone_returns() {
    let server = NatsServer::start();
    let zone_c = TcpProxy::start(server.addr());
    let grace = Duration::from_millis(1500);
    let config = Config {
        label_spill_grace: Some(grace),
        ..fast_config()
    };
    let mut parts = vec![Partition::new("only-c").require_label("zone", "c")];
    parts.extend((0..5).map(|i| Partition::new(format!("free-{i}"))));
    let observer = Observer::new(&server.url(), "spill");
    // The first zone-a worker has capacity 2: once only-c spills to zone
    // a, it holds two thirds of the six partitions.
    let members = vec![
        spawn(
            &server.url(),
            "spill",
            ("a", 2),
            &config,
            &parts,
            None,
            true,
        ),
        spawn(
            &server.url(),
            "spill",
            ("a", 1),
            &config,
            &parts,
            None,
            true,
        ),
        spawn(
            &zone_c.url(),
            "spill",
            ("c", 1),
            &config,
            &parts,
            None,
            true,
        ),
    ];
    let all = ["only-c", "free-0", "free-1", "free-2", "free-3", "free-4"];
    let view: Vec<&Member> = members.iter().collect();
    assert!(wait_until(Duration::from_secs(15), || settled(&view, &all)));
    assert!(members[2].owned().contains(&"only-c".to_string()));

    zone_c.cut();
    let zone_a = &view[..2];
    assert!(
        wait_until(Duration::from_secs(15), || observer
            .timed_metas()
            .iter()
            .any(|(_, m)| m.parked == ["only-c"])),
        "only-c is parked first"
    );
    let parked_at = observer
        .timed_metas()
        .iter()
        .find(|(_, m)| m.parked == ["only-c"])
        .map(|(t, _)| *t)
        .expect("parked");
    assert!(
        wait_until(Duration::from_secs(15), || settled(zone_a, &all)),
        "after the grace only-c spills to zone a: {:?}",
        owners(zone_a)
    );
    let spilled_at = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || members[0].owned().len() == 4
            && members[1].owned().len() == 2),
        "loads follow capacities 2 and 1: {:?}",
        owners(zone_a)
    );
    assert!(
        spilled_at - parked_at >= grace,
        "spilled after {:?}, before the grace of {grace:?}",
        spilled_at - parked_at
    );

    // Zone c returns: its worker recovers, rejoins, and only-c goes home.
    zone_c.restore();
    assert!(
        wait_until(Duration::from_secs(20), || members[2]
            .owned()
            .contains(&"only-c".to_string())
            && settled(&view, &all)),
        "only-c back in zone c: {:?}",
        owners(&view)
    );
    assert!(observer.metas().last().is_some_and(|m| m.parked.is_empty()));
    stop_all(members);
}

#[test]
fn bad_labels_and_capacities_are_rejected_before_anything_is_written() {
    let server = NatsServer::start();
    let builder = || {
        Manager::builder(
            parti::store::nats::connect(&server.url()).expect("connect"),
            "badlabels",
        )
    };
    for (b, field) in [
        (builder().label("zone", "a b"), "label"),
        (builder().label("", "a"), "label"),
        (builder().capacity(0), "capacity"),
    ] {
        match b.start() {
            Err(parti::Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidConfig for {field}, got {other:?}"),
        }
    }
}
