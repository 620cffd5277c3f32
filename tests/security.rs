//! NATS authorization on a real nats-server started with a config file:
//! correct credentials work, wrong ones fail at once with a clear error, a
//! user holding exactly `worker_permissions(group)` runs a whole group (so
//! the documented list is proven), and a user missing one permission gets an
//! error naming it.
#![allow(deprecated)] // the `nats` 0.26 crate marks everything deprecated

mod group;
mod support;

use std::time::{Duration, Instant};

use group::{exactly_once, fast_config, manager_report, wait_until};
use parti::source::StaticSource;
use parti::store::nats::{
    check_permissions, connect_with, recent_permission_violations, worker_permissions, Auth,
};
use parti::{Config, Error, Manager, Partition, State};
use support::start_with_config;

const GROUP: &str = "secure";
const N: usize = 12;

fn permissions_without(drop: &str) -> String {
    let mut p = worker_permissions(GROUP).expect("permissions");
    p.publish.retain(|s| s != drop);
    p.to_server_config()
}

fn server_config() -> String {
    let worker = worker_permissions(GROUP)
        .expect("permissions")
        .to_server_config();
    let no_leader_kv = permissions_without("$KV.parti-secure-leader.>");
    let no_inbox = {
        let mut p = worker_permissions(GROUP).expect("permissions");
        p.subscribe.clear();
        p.subscribe.push("nothing.useful".into());
        p.to_server_config()
    };
    format!(
        r#"
authorization {{
  users: [
    {{ user: admin, password: adminpw }}
    {{ user: worker, password: workerpw, {worker} }}
    {{ user: noleader, password: noleaderpw, {no_leader_kv} }}
    {{ user: noinbox, password: noinboxpw, {no_inbox} }}
  ]
}}
"#
    )
}

fn admin_ready(url: &str) -> bool {
    let Ok(nc) = connect_with(url, &Auth::user_password("admin", "adminpw")) else {
        return false;
    };
    let ok = nc
        .request_timeout("$JS.API.INFO", "", Duration::from_millis(500))
        .map(|m| !String::from_utf8_lossy(&m.data).contains("\"error\""))
        .unwrap_or(false);
    nc.close();
    ok
}

fn start_as(url: &str, user: &str, password: &str, config: &Config) -> Result<Manager, Error> {
    let nc = connect_with(url, &Auth::user_password(user, password))?;
    Manager::builder(nc, GROUP)
        .config(config.clone())
        .partitions(StaticSource::new(
            (0..N).map(|i| Partition::new(format!("p{i}"))),
        ))
        .start()
}

#[test]
fn authorization_end_to_end() {
    let server = start_with_config(&server_config(), admin_ready);
    let url = server.url();

    // Wrong credentials: a clear error, at once.
    let t = Instant::now();
    let err =
        connect_with(&url, &Auth::user_password("worker", "wrong")).expect_err("wrong password");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("authorization violation"),
        "{err}"
    );
    let err = start_as(&url, "nobody", "x", &fast_config()).expect_err("unknown user");
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("authorization violation"),
        "{err}"
    );

    // The documented minimal permissions run a full group of 3.
    let config = fast_config();
    let nc =
        connect_with(&url, &Auth::user_password("worker", "workerpw")).expect("worker connects");
    check_permissions(&nc, GROUP, Duration::from_secs(1)).expect("worker has every permission");
    nc.close();
    let managers: Vec<Manager> = (0..3)
        .map(|_| start_as(&url, "worker", "workerpw", &config).expect("worker start"))
        .collect();
    let refs: Vec<&Manager> = managers.iter().collect();
    let stable = wait_until(Duration::from_secs(20), || {
        refs.iter().all(|m| m.state() == State::Stable) && exactly_once(&manager_report(&refs), N)
    });
    assert!(
        stable,
        "restricted group did not settle: {:?}",
        manager_report(&refs)
    );
    assert!(refs.iter().all(|m| !m.assignment().is_empty()));
    assert_eq!(refs.iter().filter(|m| m.is_leader()).count(), 1);
    for m in &managers {
        m.stop().expect("graceful stop");
    }

    // One permission missing: the check names it; start() fails in bounded
    // time, and the violation explains why.
    let nc = connect_with(&url, &Auth::user_password("noleader", "noleaderpw")).expect("connects");
    let err =
        check_permissions(&nc, GROUP, Duration::from_millis(500)).expect_err("missing permission");
    match &err {
        Error::PermissionDenied { permission } => {
            assert!(
                permission.contains("publish to \"$KV.parti-secure-leader."),
                "{permission}"
            )
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    assert!(err.to_string().contains("missing permission"), "{err}");
    nc.close();
    let short = Config {
        startup_timeout: Duration::from_secs(2),
        cold_start_window: Duration::from_millis(500),
        ..fast_config()
    };
    let t = Instant::now();
    let err = start_as(&url, "noleader", "noleaderpw", &short)
        .expect_err("cannot lead without the leader bucket");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "start took {:?}",
        t.elapsed()
    );
    // Other tests of this process report violations too: look for ours.
    let why = recent_permission_violations(Duration::from_secs(30));
    assert!(
        why.iter()
            .any(|e| e.to_string().contains("$KV.parti-secure-leader.")),
        "{err} / {why:?}"
    );

    // No subscribe permission on _INBOX.>: every reply is denied.
    let nc = connect_with(&url, &Auth::user_password("noinbox", "noinboxpw")).expect("connects");
    let err = check_permissions(&nc, GROUP, Duration::from_millis(500)).expect_err("no inbox");
    assert!(
        matches!(&err, Error::PermissionDenied { permission } if permission.contains("_INBOX")),
        "{err:?}"
    );
    nc.close();
}

#[test]
fn token_authentication() {
    let config = "authorization { token: \"s3cret-token\" }\n";
    let server = start_with_config(config, |url| {
        connect_with(url, &Auth::token("s3cret-token")).is_ok()
    });
    let url = server.url();
    let err = connect_with(&url, &Auth::token("wrong")).expect_err("wrong token");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let err = connect_with(&url, &Auth::None).expect_err("no token");
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("authorization violation"),
        "{err}"
    );
    let nc = connect_with(&url, &Auth::token("s3cret-token")).expect("token connects");
    let m = Manager::builder(nc, "tok")
        .config(fast_config())
        .partitions(StaticSource::new([Partition::new("only")]))
        .start()
        .expect("start with a token");
    assert_eq!(m.assignment().len(), 1);
    m.stop().expect("stop");
}

/// Every entry of `worker_permissions` is probed by `check_permissions`: a
/// user lacking any single one gets `PermissionDenied` naming that entry.
#[test]
fn every_missing_permission_is_named() {
    let all = worker_permissions(GROUP).expect("permissions");
    let users: Vec<(String, String)> = all
        .publish
        .iter()
        .enumerate()
        .map(|(i, entry)| (format!("u{i}"), entry.clone()))
        .collect();
    let entries: Vec<String> = users
        .iter()
        .map(|(user, entry)| {
            format!(
                "{{ user: {user}, password: pw, {} }}",
                permissions_without(entry)
            )
        })
        .collect();
    let config = format!(
        "authorization {{ users: [ {{ user: admin, password: adminpw }}\n{} ] }}\n",
        entries.join("\n")
    );
    let server = start_with_config(&config, admin_ready);
    let url = server.url();
    // Four at a time: each failing probe waits out its timeout.
    for chunk in users.chunks(4) {
        let handles: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|(user, entry)| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let nc =
                        connect_with(&url, &Auth::user_password(&user, "pw")).expect("connects");
                    let result = check_permissions(&nc, GROUP, Duration::from_secs(1));
                    nc.close();
                    (entry, result)
                })
            })
            .collect();
        for h in handles {
            let (entry, result) = h.join().expect("check thread");
            let needle = entry.trim_end_matches('>');
            match result {
                Err(Error::PermissionDenied { permission }) => {
                    assert!(
                        permission.contains(needle),
                        "without {entry}: named {permission}"
                    )
                }
                other => panic!("without {entry}: expected PermissionDenied, got {other:?}"),
            }
        }
    }
}

/// Counts what a subscription receives, and keeps what mentions `needle`.
fn spy(
    nc: &nats::Connection,
    subject: &str,
    needle: &'static str,
) -> std::sync::Arc<parking_lot::Mutex<(usize, Vec<String>)>> {
    let seen = std::sync::Arc::new(parking_lot::Mutex::new((0, Vec::new())));
    let sink = seen.clone();
    nc.subscribe(subject)
        .expect("subscribe")
        .with_handler(move |m| {
            let text = format!(
                "{} {} {}",
                m.subject,
                m.reply.as_deref().unwrap_or(""),
                String::from_utf8_lossy(&m.data)
            );
            let mut s = sink.lock();
            s.0 += 1;
            if text.contains(needle) {
                s.1.push(text);
            }
            Ok(())
        });
    seen
}

/// Two groups in one account, each run by a user holding exactly its
/// `worker_permissions`: a worker user of group A may subscribe only to A's
/// inbox prefix, and everything arriving there is A's, while B's replies
/// and watch deliveries flow (seen by an admin) all along.
#[test]
fn groups_sharing_an_account_see_nothing_of_each_other() {
    let perms = |g: &str| {
        worker_permissions(g)
            .expect("permissions")
            .to_server_config()
    };
    let config = format!(
        "authorization {{ users: [\n{{ user: admin, password: adminpw }}\n\
         {{ user: wa, password: pw, {} }}\n{{ user: wb, password: pw, {} }}\n] }}\n",
        perms("ga"),
        perms("gb")
    );
    let server = start_with_config(&config, admin_ready);
    let url = server.url();
    let connect = |user: &str| {
        let password = if user == "admin" { "adminpw" } else { "pw" };
        connect_with(&url, &Auth::user_password(user, password)).expect("connects")
    };

    // A worker user of group A listening on everything it may, and trying
    // the rest of the inbox space.
    let a_spy = connect("wa");
    let a_seen = spy(&a_spy, "_INBOX.parti.ga.>", "parti-gb");
    let a_wide = spy(&a_spy, "_INBOX.>", "parti-gb");
    let a_on_b = spy(&a_spy, "_INBOX.parti.gb.>", "parti-gb");
    let admin = connect("admin");
    let b_seen = spy(&admin, "_INBOX.parti.gb.>", "parti-gb");

    let start = |user: &str, group: &str| {
        Manager::builder(connect(user), group)
            .config(fast_config())
            .partitions(StaticSource::new(
                (0..N).map(|i| Partition::new(format!("p{i}"))),
            ))
            .start()
            .expect("start with the group's minimal permissions")
    };
    let managers = [
        start("wa", "ga"),
        start("wa", "ga"),
        start("wb", "gb"),
        start("wb", "gb"),
    ];
    let refs: Vec<&Manager> = managers.iter().collect();
    let settled = wait_until(Duration::from_secs(20), || {
        refs.iter().all(|m| m.state() == State::Stable)
            && exactly_once(&manager_report(&refs[..2]), N)
            && exactly_once(&manager_report(&refs[2..]), N)
    });
    assert!(
        settled,
        "groups did not settle: {:?}",
        manager_report(&refs)
    );
    // Both groups keep talking (heartbeats every 200 ms): wait until each
    // side has seen plenty of its own group's traffic.
    let busy = wait_until(Duration::from_secs(20), || {
        a_seen.lock().0 >= 30 && b_seen.lock().1.len() >= 30
    });
    assert!(
        busy,
        "A's spy saw {}, the admin saw {} of B's",
        a_seen.lock().0,
        b_seen.lock().1.len()
    );
    for m in &managers {
        m.stop().expect("stop");
    }
    let denied = recent_permission_violations(Duration::from_secs(60));
    for subject in ["\"_INBOX.>\"", "\"_INBOX.parti.gb.>\""] {
        assert!(
            denied.iter().any(|e| e.to_string().contains(subject)),
            "subscribing to {subject} as A's worker was not denied: {denied:?}"
        );
    }
    assert_eq!(
        a_seen.lock().1,
        Vec::<String>::new(),
        "B's traffic reached A"
    );
    assert_eq!(a_wide.lock().0, 0, "A's denied _INBOX.> received messages");
    assert_eq!(a_on_b.lock().0, 0, "A's denied B inbox received messages");
}
