//! A key-admin CLI over [`ScalekitClient::from_env`].
//!
//! ```text
//! export SCALEKIT_ENVIRONMENT_URL=https://acme.scalekit.dev
//! export SCALEKIT_CLIENT_ID=skc_...  SCALEKIT_CLIENT_SECRET=...
//! cargo run --example keys -- create --org org_123 --user usr_456 --claim env=prod --ttl 90d
//! cargo run --example keys -- list --org org_123
//! cargo run --example keys -- rotate apit_71234567890123456
//! cargo run --example keys -- revoke apit_71234567890123456
//! ```
//!
//! With `REDIS_URL` set (and optionally `REDIS_CHANNEL`; needs feature `redis`), `revoke` and
//! `rotate` also announce the revocation to every instance subscribed with
//! `RedisRevocations`, and wait for the announcement to leave before exiting.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration.

mod announce;
mod cli;

use std::process::ExitCode;

use axum_api_key::keys::{CreateToken, KeyStoreError, ListTokens, MAX_PAGE_SIZE, list_all};
use axum_api_key::request::Fingerprint;
use axum_api_key::scalekit::{ScalekitClient, shape};
use axum_api_key::{ApiKey, KeyStore, TokenInfo, Validator};
use cli::Command;
use time::OffsetDateTime;

/// A listing stops after this many pages, whatever the server says.
const MAX_PAGES: usize = 1_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(command) => command,
        Err(message) => {
            eprintln!("error: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if let Command::Doctor { org } = &command {
        return doctor(org).await;
    }
    let client = match ScalekitClient::from_env() {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let announcer = if matches!(command, Command::Revoke { .. } | Command::Rotate { .. }) {
        match announce::Announcer::from_env(&client) {
            Ok(announcer) => Some(announcer),
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let mut result = run(&client, command).await;
    if let (Ok(()), Some(announcer)) = (&result, &announcer) {
        result = announcer.finish().await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `keys doctor`: exit 0 when at least one transport works end to end.
async fn doctor(org: &str) -> ExitCode {
    let builder = match ScalekitClient::builder_from_env() {
        Ok(builder) => builder,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let report = builder.doctor(org).await;
    print!("{report}");
    let working = report.working();
    if working.is_empty() {
        eprintln!("error: no transport reaches Scalekit with these credentials");
        ExitCode::FAILURE
    } else {
        let names: Vec<String> = working.iter().map(ToString::to_string).collect();
        println!("working: {}", names.join(", "));
        ExitCode::SUCCESS
    }
}

/// Every command, written against the crate's contracts only ([`KeyStore`] to manage keys,
/// [`Validator`] to check a new one), so it works the same over any store.
async fn run<S: KeyStore + Validator>(store: &S, command: Command) -> Result<(), String> {
    match command {
        Command::Create { .. } => {
            let request = command
                .create_request(OffsetDateTime::now_utc())
                .ok_or("internal: not a create command")?;
            create(store, request).await.map(|_| ())
        }
        Command::List { org, user } => {
            let mut request = ListTokens::new(org).page_size(MAX_PAGE_SIZE);
            request.user_id = user;
            let keys = list_all(store, request, MAX_PAGES)
                .await
                .map_err(|e| format!("listing keys: {e}"))?;
            for info in &keys {
                println!("{}", describe(info));
            }
            println!("{} active key(s)", keys.len());
            Ok(())
        }
        Command::Revoke { token } => {
            store
                .invalidate(&token)
                .await
                .map_err(|e| format!("revoking {}: {e}", printable(&token)))?;
            println!("revoked {}", printable(&token));
            Ok(())
        }
        Command::Rotate { token_id } => rotate(store, &token_id).await,
        Command::Help | Command::Doctor { .. } => Ok(()),
    }
}

/// Mints a key and prints it, once.
async fn create<S: KeyStore>(store: &S, request: CreateToken) -> Result<ApiKey, String> {
    let created = store
        .create(request)
        .await
        .map_err(|e| format!("creating a key: {e}"))?;
    println!("token_id: {}", created.token_id);
    println!("key: {}", created.key.expose_secret());
    println!("(store the key now: it cannot be shown again)");
    Ok(created.key)
}

/// New key first, checked; the old one is revoked only once the new one works, so a failed
/// rotation never leaves the owner without a working key.
async fn rotate<S: KeyStore + Validator>(store: &S, token_id: &str) -> Result<(), String> {
    let old = store.get(token_id).await.map_err(|e| match e {
        KeyStoreError::NotFound => format!("{token_id} is not an active key"),
        other => format!("looking up {token_id}: {other}"),
    })?;
    let mut request = CreateToken::new(old.organization_id().to_owned());
    request.user_id = old.user_id().map(str::to_owned);
    request.custom_claims = old.claims_map();
    request.expiry = old.expiry();
    request.description = old.description().map(str::to_owned);
    let new_key = create(store, request).await?;
    let new_auth = store
        .validate(&new_key)
        .await
        .map_err(|e| format!("the new key does not validate ({e}); {token_id} was left active"))?;
    let new_info = new_auth.info();
    if new_info.organization_id() != old.organization_id() || new_info.user_id() != old.user_id() {
        return Err(format!(
            "the new key {} has another scope than {token_id}; {token_id} was left active",
            new_info.token_id()
        ));
    }
    store.invalidate(token_id).await.map_err(|e| {
        format!(
            "the new key {} works, but revoking {token_id} failed: {e}",
            new_info.token_id()
        )
    })?;
    println!("revoked {token_id}; replaced by {}", new_info.token_id());
    Ok(())
}

/// A key-or-id argument as it may be printed: an id as it is, a key as its fingerprint.
fn printable(key_or_id: &str) -> String {
    if shape::is_token_id(key_or_id) {
        key_or_id.to_owned()
    } else {
        format!("[api key {}]", Fingerprint::of(key_or_id))
    }
}

fn describe(info: &TokenInfo) -> String {
    let claims: Vec<String> = info
        .claims()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let expiry = info
        .expiry()
        .map_or_else(|| "never".to_owned(), |at| at.to_string());
    format!(
        "{}  …{}  user={}  claims=[{}]  expires={}  {}",
        info.token_id(),
        info.token_suffix().unwrap_or("????"),
        info.user_id().unwrap_or("-"),
        claims.join(","),
        expiry,
        info.description().unwrap_or(""),
    )
}
