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

use axum_api_key::admin::redacted_token_ref;
use axum_api_key::{CreateToken, ScalekitClient, ScalekitError, TokenInfo};
use cli::Command;
use time::OffsetDateTime;

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

async fn run(client: &ScalekitClient, command: Command) -> Result<(), String> {
    match command {
        Command::Create { .. } => {
            let request = command
                .create_request(OffsetDateTime::now_utc())
                .ok_or("internal: not a create command")?;
            create(client, request).await.map(|_| ())
        }
        Command::List { org, user } => {
            let keys = client
                .list_all_tokens(&org, user.as_deref())
                .await
                .map_err(|e| format!("listing keys: {e}"))?;
            for info in &keys {
                println!("{}", describe(info));
            }
            println!("{} active key(s)", keys.len());
            Ok(())
        }
        Command::Revoke { token } => {
            client
                .invalidate_token(&token)
                .await
                .map_err(|e| format!("revoking {}: {e}", redacted_token_ref(&token)))?;
            println!("revoked {}", redacted_token_ref(&token));
            Ok(())
        }
        Command::Rotate { token_id } => rotate(client, &token_id).await,
        Command::Help | Command::Doctor { .. } => Ok(()),
    }
}

/// Mints a key and prints it, once.
async fn create(client: &ScalekitClient, request: CreateToken) -> Result<String, String> {
    let created = client
        .create_token(request)
        .await
        .map_err(|e| format!("creating a key: {e}"))?;
    println!("token_id: {}", created.token_id);
    println!("key: {}", created.key.expose_secret());
    println!("(store the key now: it cannot be shown again)");
    Ok(created.key.expose_secret().to_owned())
}

/// New key first, checked; the old one is revoked only once the new one works, so a failed
/// rotation never leaves the owner without a working key.
async fn rotate(client: &ScalekitClient, token_id: &str) -> Result<(), String> {
    let old = client.validate_token(token_id).await.map_err(|e| match e {
        ScalekitError::NotFound => format!("{token_id} is not an active key"),
        other => format!("looking up {token_id}: {other}"),
    })?;
    let mut request = CreateToken::new(old.organization_id.clone());
    request.user_id = old.user_id.clone();
    request.custom_claims = old.custom_claims.clone();
    request.expiry = old.expiry;
    request.description = old.description.clone();
    let new_key = create(client, request).await?;
    let new_info = client
        .validate_token(&new_key)
        .await
        .map_err(|e| format!("the new key does not validate ({e}); {token_id} was left active"))?;
    if new_info.organization_id != old.organization_id || new_info.user_id != old.user_id {
        return Err(format!(
            "the new key {} has another scope than {token_id}; {token_id} was left active",
            new_info.token_id
        ));
    }
    client.invalidate_token(token_id).await.map_err(|e| {
        format!(
            "the new key {} works, but revoking {token_id} failed: {e}",
            new_info.token_id
        )
    })?;
    println!("revoked {token_id}; replaced by {}", new_info.token_id);
    Ok(())
}

fn describe(info: &TokenInfo) -> String {
    let claims: Vec<String> = info
        .custom_claims
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let expiry = info
        .expiry
        .map_or_else(|| "never".to_owned(), |at| at.to_string());
    format!(
        "{}  …{}  user={}  claims=[{}]  expires={}  {}",
        info.token_id,
        info.token_suffix.as_deref().unwrap_or("????"),
        info.user_id.as_deref().unwrap_or("-"),
        claims.join(","),
        expiry,
        info.description.as_deref().unwrap_or(""),
    )
}
