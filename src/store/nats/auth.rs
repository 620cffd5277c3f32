//! Authentication, TLS pass-through, and telling permission problems apart
//! from outages.
//!
//! parti takes a ready `nats::Connection`, so every option of the `nats`
//! crate passes through: build [`options_with`] for your [`Auth`], add TLS
//! settings (`tls_required`, `add_root_certificate`, `client_cert`) if
//! needed, and connect with [`connect_checked`]; or call [`connect_with`].
//!
//! ```no_run
//! use parti::store::nats::{connect_checked, connect_with, options_with, Auth};
//! # fn main() -> Result<(), parti::Error> {
//! // User and password (or Auth::Token, Auth::CredentialsFile, Auth::NKey).
//! let nc = connect_with("nats://nats.internal:4222", &Auth::user_password("orders", "s3cret"))?;
//! // With TLS: the `nats` crate's own options pass through.
//! let tls = options_with(&Auth::credentials_file("/etc/nats/orders.creds"))
//!     .tls_required(true)
//!     .add_root_certificate("/etc/nats/ca.pem");
//! let nc2 = connect_checked("tls://nats.internal:4222", tls)?;
//! # Ok(()) }
//! ```
//!
//! # Permission violations
//! A NATS server that denies a publish or subscribe does not fail the call:
//! it sends `-ERR 'Permissions Violation for Publish to "<subject>"'` on the
//! connection and drops the message, so a request simply times out.
//! Connections made with [`options_with`] log every such error at error
//! level and remember the recent ones; [`check_permissions`] runs
//! side-effect-free probes of everything a worker of a group needs and names
//! the first permission the server denied ([`Error::PermissionDenied`]), and
//! [`recent_permission_violations`] tells whether a timeout you got (e.g.
//! from `start()`) came with one.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nats::HeaderMap;
use parking_lot::Mutex;

use crate::names::BucketNames;
use crate::Error;

/// Signs a server nonce with an nkey seed (e.g. with the `nkeys` crate:
/// `move |nonce| key_pair.sign(nonce).unwrap_or_default()`).
pub type NKeySigner = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// How a connection authenticates to NATS.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// A user and password from the server's `authorization.users`.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A shared token (`authorization.token`).
    Token(String),
    /// A `.creds` file (user JWT + nkey seed) of a decentralized (operator)
    /// setup, as made by `nsc`.
    CredentialsFile(PathBuf),
    /// An nkey user: its public key, and a function signing the server's
    /// nonce with the seed.
    NKey {
        /// The public key (`U…`).
        public_key: String,
        /// Signs the nonce.
        sign: NKeySigner,
    },
}

impl std::fmt::Debug for Auth {
    // Never prints secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("Auth::None"),
            Auth::UserPassword { user, .. } => {
                write!(f, "Auth::UserPassword {{ user: {user:?}, .. }}")
            }
            Auth::Token(_) => f.write_str("Auth::Token(..)"),
            Auth::CredentialsFile(p) => write!(f, "Auth::CredentialsFile({p:?})"),
            Auth::NKey { public_key, .. } => {
                write!(f, "Auth::NKey {{ public_key: {public_key:?}, .. }}")
            }
        }
    }
}

impl Auth {
    /// [`Auth::UserPassword`].
    pub fn user_password(user: impl Into<String>, password: impl Into<String>) -> Self {
        Auth::UserPassword {
            user: user.into(),
            password: password.into(),
        }
    }

    /// [`Auth::Token`].
    pub fn token(token: impl Into<String>) -> Self {
        Auth::Token(token.into())
    }

    /// [`Auth::CredentialsFile`].
    pub fn credentials_file(path: impl Into<PathBuf>) -> Self {
        Auth::CredentialsFile(path.into())
    }
}

/// How many recent violations are remembered, and for how long.
const KEEP: usize = 64;
const KEEP_FOR: Duration = Duration::from_secs(300);

static VIOLATIONS: Mutex<VecDeque<(Instant, String)>> = Mutex::new(VecDeque::new());

fn record_server_error(message: String) {
    if message
        .to_ascii_lowercase()
        .contains("permissions violation")
    {
        log::error!("NATS permissions violation: {message}");
        let mut v = VIOLATIONS.lock();
        if v.len() >= KEEP {
            v.pop_front();
        }
        v.push_back((Instant::now(), message));
    } else {
        log::warn!("NATS server error: {message}");
    }
}

/// Turns the server's `Permissions Violation for Publish to "x"` into
/// `publish to "x"`.
fn permission_of(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let Some(i) = lower.find("permissions violation for ") else {
        return message.trim_matches('\'').to_string();
    };
    let rest = &message[i + "permissions violation for ".len()..];
    let rest = rest.trim_end_matches('\'').trim();
    let mut chars = rest.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => message.to_string(),
    }
}

/// The permission violations reported by the server within `within` on
/// any connection made with [`options_with`] in this process, most recent
/// first, as [`Error::PermissionDenied`]. Use it to explain a timeout (e.g.
/// from `start()`). Several connections of one process share this record.
pub fn recent_permission_violations(within: Duration) -> Vec<Error> {
    let v = VIOLATIONS.lock();
    v.iter()
        .rev()
        .filter(|(at, _)| at.elapsed() <= within.min(KEEP_FOR))
        .map(|(_, m)| Error::PermissionDenied {
            permission: permission_of(m),
        })
        .collect()
}

/// A violation naming `subject` reported since `since`.
fn violation_for(subject: &str, since: Instant) -> Option<Error> {
    let v = VIOLATIONS.lock();
    v.iter()
        .rev()
        .filter(|(at, _)| *at >= since)
        .find(|(_, m)| m.contains(subject))
        .map(|(_, m)| Error::PermissionDenied {
            permission: permission_of(m),
        })
}

/// parti's connection options (like
/// [`connect_options`](super::connect_options): connect at once, reconnect
/// forever with [`reconnect_delay`](super::reconnect_delay), no reconnect
/// buffer, a client name) with `auth`, and an error callback that
/// logs and remembers permission violations. The first connect is not
/// retried, so wrong credentials or an unreachable server fail at once.
///
/// Add TLS with the `nats` crate's own methods (`tls_required`,
/// `add_root_certificate`, `client_cert`, `tls_client_config`).
pub fn options_with(auth: &Auth) -> nats::Options {
    let options = match auth {
        Auth::None => nats::Options::new(),
        Auth::UserPassword { user, password } => nats::Options::with_user_pass(user, password),
        Auth::Token(token) => nats::Options::with_token(token),
        Auth::CredentialsFile(path) => nats::Options::with_credentials(path),
        Auth::NKey { public_key, sign } => {
            let sign = sign.clone();
            nats::Options::with_nkey(public_key, move |nonce| sign(nonce))
        }
    };
    options
        .with_name("parti")
        .max_reconnects(None)
        .reconnect_delay_callback(super::reconnect_delay)
        .reconnect_buffer_size(0)
        .error_callback(|e| record_server_error(e.to_string()))
}

/// Connects to `url` with `options` (from [`options_with`]).
///
/// # Errors
/// [`Error::Connect`] at once when the server is unreachable or refuses the
/// credentials (the reason then reads "authorization violation").
pub fn connect_checked(url: &str, options: nats::Options) -> Result<nats::Connection, Error> {
    options.connect(url).map_err(|e| Error::Connect {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// Connects to `url` with [`options_with`]`(auth)`.
///
/// # Errors
/// As [`connect_checked`].
pub fn connect_with(url: &str, auth: &Auth) -> Result<nats::Connection, Error> {
    connect_checked(url, options_with(auth))
}

/// The prefix of the reply subjects of every request parti makes for
/// `group`'s buckets, and of its watch deliveries: `_INBOX.parti.<group>.`.
///
/// Workers of different groups sharing one account therefore never
/// receive each other's replies once each may subscribe only under its own
/// prefix ([`worker_permissions`]; `docs/connections.md`).
///
/// ```
/// assert_eq!(parti::store::nats::inbox_prefix("orders")?, "_INBOX.parti.orders.");
/// # Ok::<(), parti::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidName`] for an invalid group name.
pub fn inbox_prefix(group: &str) -> Result<String, Error> {
    crate::names::validate_group(group)?;
    Ok(super::wire::group_inbox_prefix(group))
}

/// The subjects a worker of `group` publishes to and subscribes on: the
/// minimal NATS permissions of a worker (see `docs/security.md`, proven by
/// `tests/security.rs`). Replies come only to [`inbox_prefix`]`(group)`, so
/// the subscribe permission is scoped to the group: in an account shared by
/// several groups a worker of one receives nothing of another's.
///
/// ```
/// let p = parti::store::nats::worker_permissions("orders")?;
/// assert!(p.publish.contains(&"$KV.parti-orders-workers.>".to_string()));
/// assert_eq!(p.subscribe, vec!["_INBOX.parti.orders.>".to_string()]);
/// # Ok::<(), parti::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidName`] for an invalid group name.
pub fn worker_permissions(group: &str) -> Result<Permissions, Error> {
    let names = BucketNames::for_group(group)?;
    let mut publish = vec!["$JS.API.INFO".to_string()];
    for bucket in [&names.workers, &names.leader, &names.assignments] {
        let stream = format!("KV_{bucket}");
        publish.extend([
            format!("$JS.API.STREAM.INFO.{stream}"),
            format!("$JS.API.STREAM.CREATE.{stream}"),
            format!("$JS.API.STREAM.MSG.GET.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
            format!("$KV.{bucket}.>"),
            // Flow-control answers of the watches.
            format!("$JS.FC.{stream}.>"),
        ]);
    }
    Ok(Permissions {
        publish,
        subscribe: vec![format!("{}>", super::wire::group_inbox_prefix(group))],
    })
}

/// Subjects to allow, as in a nats-server `permissions` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// `permissions.publish.allow`.
    pub publish: Vec<String>,
    /// `permissions.subscribe.allow`.
    pub subscribe: Vec<String>,
}

impl Permissions {
    /// The block in nats-server configuration syntax, for a `users` entry.
    ///
    /// ```
    /// let block = parti::store::nats::worker_permissions("orders")?.to_server_config();
    /// assert!(block.starts_with("permissions: {"));
    /// # Ok::<(), parti::Error>(())
    /// ```
    pub fn to_server_config(&self) -> String {
        let list = |v: &[String]| {
            v.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "permissions: {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }}",
            list(&self.publish),
            list(&self.subscribe)
        )
    }
}

/// Probes, without side effects, every permission a worker of `group`
/// needs, on a connection made with [`options_with`]; run it before
/// `start()` to get a clear error instead of a timeout.
///
/// Each probe is a request the server answers (often with a JetStream
/// error such as "stream not found" or "wrong last sequence", which is
/// fine: the permission was granted). A probe that gets no answer within
/// `timeout` is matched against the violations the server reported.
///
/// # Errors
/// [`Error::PermissionDenied`] naming the first denied permission, as the
/// server put it (e.g. `publish to "$KV.parti-orders-leader.leader"`, or
/// `subscription to "_INBOX.parti.orders.…"`); [`Error::Kv`] (`Unavailable`) for a
/// timeout without any violation (NATS unreachable or JetStream down).
pub fn check_permissions(
    conn: &nats::Connection,
    group: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let names = BucketNames::for_group(group)?;
    let inbox = super::wire::group_inbox_prefix(group);
    let mut probes: Vec<(String, Option<HeaderMap>, Vec<u8>)> =
        vec![("$JS.API.INFO".into(), None, Vec::new())];
    for bucket in [&names.workers, &names.leader, &names.assignments] {
        let stream = format!("KV_{bucket}");
        probes.push((format!("$JS.API.STREAM.INFO.{stream}"), None, Vec::new()));
        probes.push((
            format!("$JS.API.STREAM.MSG.GET.{stream}"),
            None,
            format!(r#"{{"last_by_subj":"$KV.{bucket}._parti_probe"}}"#).into_bytes(),
        ));
        // A mismatching stream name in the body: the server rejects the
        // request, proving the permission without creating anything.
        probes.push((
            format!("$JS.API.STREAM.CREATE.{stream}"),
            None,
            br#"{"name":"_parti_probe_mismatch"}"#.to_vec(),
        ));
        probes.push((
            format!("$JS.API.CONSUMER.CREATE.{stream}"),
            None,
            br#"{"stream_name":"_parti_probe_mismatch","config":{}}"#.to_vec(),
        ));
        probes.push((
            format!("$JS.API.CONSUMER.DELETE.{stream}._parti_probe"),
            None,
            Vec::new(),
        ));
        // Nobody listens there: "no responders" proves the permission.
        probes.push((format!("$JS.FC.{stream}._parti_probe"), None, Vec::new()));
        // A write that cannot succeed: it expects a sequence no key has.
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", u64::MAX.to_string());
        probes.push((
            format!("$KV.{bucket}._parti_probe"),
            Some(headers),
            b"probe".to_vec(),
        ));
    }
    for (subject, headers, body) in probes {
        let since = Instant::now();
        // Replies come where the worker's own do: the probe also proves the
        // subscribe permission on the group's inbox prefix.
        let outcome =
            super::link::scoped_request(conn, &inbox, &subject, headers.as_ref(), timeout, &body);
        match outcome {
            // "No responders" (the bucket does not exist yet) is an answer
            // too: the request was allowed through.
            Ok(_) => continue,
            Err(e) if e.kind() != std::io::ErrorKind::TimedOut => continue,
            Err(_) => {}
        }
        // The server's -ERR may trail the timeout slightly.
        let deadline = Instant::now() + Duration::from_millis(200);
        loop {
            if let Some(e) =
                violation_for(&subject, since).or_else(|| violation_for("_INBOX", since))
            {
                return Err(e);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        return Err(Error::Kv(crate::store::KvError::Unavailable(format!(
            "permission check: {subject}: no answer within {timeout:?} and no permission violation reported"
        ))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_text() {
        assert_eq!(
            permission_of("'Permissions Violation for Publish to \"$KV.a.b\"'"),
            "publish to \"$KV.a.b\""
        );
        assert_eq!(
            permission_of("Permissions Violation for Subscription to \"_INBOX.x\""),
            "subscription to \"_INBOX.x\""
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = format!("{:?}", Auth::user_password("u", "hunter2"));
        assert!(!s.contains("hunter2"));
        assert!(!format!("{:?}", Auth::token("t0k")).contains("t0k"));
    }
}
