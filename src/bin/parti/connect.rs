//! Connecting with the authentication and TLS options the library accepts.
#![allow(deprecated)] // every item of the `nats` 0.26 crate is deprecated

use std::sync::Arc;

use parti::store::nats::{options_with, Auth};

use super::args::Args;

/// Usage text of the connection flags.
pub const USAGE: &str =
    "[--server URL] [--user U --password P | --token T | --creds FILE | --nkey SEEDFILE] \
[--tls-ca FILE] [--tls-cert FILE --tls-key FILE]";

/// Connects to `--server` with the given credentials and the library's
/// options (`options_with`: dial at once, permission violations recorded for
/// `check_permissions`). Unlike a worker's connection, this fails at once
/// when the server cannot be reached and gives up after three reconnects:
/// an operator wants an error, not a wait.
pub fn connect(args: &Args) -> Result<nats::Connection, String> {
    let mut options = options_with(&credentials(args)?);
    if let Some(ca) = args.value("--tls-ca") {
        options = options.add_root_certificate(ca);
    }
    match (args.value("--tls-cert"), args.value("--tls-key")) {
        (Some(cert), Some(key)) => options = options.client_cert(cert, key),
        (None, None) => {}
        _ => return Err("--tls-cert and --tls-key go together".into()),
    }
    let server = args.server();
    options
        .with_name("parti-cli")
        .max_reconnects(Some(3))
        .connect(server)
        .map_err(|e| format!("cannot connect to {server}: {e}"))
}

fn credentials(args: &Args) -> Result<Auth, String> {
    let given: Vec<&str> = ["--user", "--token", "--creds", "--nkey"]
        .into_iter()
        .filter(|f| args.value(f).is_some())
        .collect();
    if given.len() > 1 {
        return Err(format!(
            "choose one way to authenticate, not {}",
            given.join(" and ")
        ));
    }
    if let Some(user) = args.value("--user") {
        let password = args.value("--password").ok_or("--user needs --password")?;
        return Ok(Auth::user_password(user, password));
    }
    if args.value("--password").is_some() {
        return Err("--password needs --user".into());
    }
    if let Some(token) = args.value("--token") {
        return Ok(Auth::token(token));
    }
    if let Some(file) = args.value("--creds") {
        return Ok(Auth::credentials_file(file));
    }
    if let Some(file) = args.value("--nkey") {
        let seed = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read nkey seed {file}: {e}"))?;
        let pair = nkeys::KeyPair::from_seed(seed.trim())
            .map_err(|e| format!("invalid nkey seed in {file}: {e}"))?;
        let public = pair.public_key();
        // A failed signature only makes the server reject the connection,
        // which is reported as an authorization error.
        return Ok(Auth::NKey {
            public_key: public,
            sign: Arc::new(move |nonce| pair.sign(nonce).unwrap_or_default()),
        });
    }
    Ok(Auth::None)
}
