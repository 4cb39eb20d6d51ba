//! Runs the crate's fake Scalekit (feature `test-util`) as a process on 127.0.0.1, mints one
//! organization key and one user key, and prints what the quickstart needs to use it:
//!
//! ```text
//! cargo run --features test-util --example fake_scalekit
//! # then, in another shell, with the printed values:
//! SCALEKIT_ENVIRONMENT_URL=... SCALEKIT_CLIENT_ID=... SCALEKIT_CLIENT_SECRET=... \
//!     cargo run --example quickstart
//! ```
//!
//! It serves Scalekit's token REST routes with the wire format of `scalekit-wire.md`, and the
//! gRPC `ApiTokenService` on the same port, in memory, until it is stopped. With `-- --tls` it
//! serves HTTPS (HTTP/1.1 and h2) from a CA it generates, writes that CA to a file and prints
//! `SCALEKIT_CA_FILE=<path>` too (for the client, `REQUESTS_CA_BUNDLE` and
//! `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`). For local experiments and tests; never for production.

use axum_api_key::keys::CreateToken;
use axum_api_key::testing::FakeScalekit;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tls = std::env::args().skip(1).any(|arg| arg == "--tls");
    let fake = FakeScalekit::builder().tls(tls).start().await?;
    let ca_file = match fake.ca_pem() {
        Some(pem) => {
            let port = fake.url().rsplit(':').next().unwrap_or("0").to_owned();
            let path = std::env::temp_dir().join(format!("fake-scalekit-{port}-ca.pem"));
            std::fs::write(&path, pem)?;
            Some(path)
        }
        None => None,
    };
    let org = fake
        .tokens()
        .create(CreateToken::new("org_demo").claim("environment", "production"))?;
    let user = fake
        .tokens()
        .create(CreateToken::new("org_demo").user("usr_demo"))?;
    println!("SCALEKIT_ENVIRONMENT_URL={}", fake.url());
    println!("SCALEKIT_CLIENT_ID={}", fake.client_id());
    println!("SCALEKIT_CLIENT_SECRET={}", fake.client_secret());
    if let Some(path) = &ca_file {
        println!("SCALEKIT_CA_FILE={}", path.display());
    }
    println!("org key: {}", org.key.expose_secret());
    println!("user key: {}", user.key.expose_secret());
    tokio::signal::ctrl_c().await?;
    if let Some(path) = ca_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
