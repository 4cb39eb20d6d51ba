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
//! It serves Scalekit's token REST routes with the wire format of `scalekit-wire.md`, in memory,
//! until it is stopped. For local experiments and the load test; never for production.

use axum_api_key::keys::CreateToken;
use axum_api_key::testing::FakeScalekit;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeScalekit::start().await;
    let org = fake
        .tokens()
        .create(CreateToken::new("org_demo").claim("environment", "production"))?;
    let user = fake
        .tokens()
        .create(CreateToken::new("org_demo").user("usr_demo"))?;
    println!("SCALEKIT_ENVIRONMENT_URL={}", fake.url());
    println!("SCALEKIT_CLIENT_ID={}", fake.client_id());
    println!("SCALEKIT_CLIENT_SECRET={}", fake.client_secret());
    println!("org key: {}", org.key.expose_secret());
    println!("user key: {}", user.key.expose_secret());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
