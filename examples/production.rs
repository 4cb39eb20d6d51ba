//! A production shape: Scalekit, the cache, revocations and rate limits shared over Redis,
//! the failed-key throttle behind a proxy, and a graceful shutdown.
//!
//! ```text
//! export SCALEKIT_ENVIRONMENT_URL=https://acme.scalekit.com
//! export SCALEKIT_CLIENT_ID=skc_... SCALEKIT_CLIENT_SECRET=...
//! export REDIS_URL=redis://127.0.0.1:6379        # optional: share revocations and limits
//! cargo run --example production --features redis
//! ```
//!
//! Against the fake Scalekit: `cargo run --example fake_scalekit --features test-util` prints
//! the three variables and two keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::{Json, Router, routing::get};
use axum_api_key::cache::CachedValidator;
use axum_api_key::ratelimit::{ClientSource, FailedKeyThrottle, LimitBy, RateLimitLayer};
use axum_api_key::scalekit::ScalekitClient;
use axum_api_key::{ApiKeyLayer, OrgScope, TokenInfo};

/// What `/v1/me` answers: the key's scope and claims. Never `Json(TokenInfo)`: it carries the
/// `token_id`, which is not for clients (Scalekit's validate call accepts it in place of a key).
#[derive(serde::Serialize)]
struct Me {
    organization_id: String,
    user_id: Option<String>,
    custom_claims: BTreeMap<String, String>,
}

async fn me(info: TokenInfo) -> Json<Me> {
    Json(Me {
        organization_id: info.organization_id().to_owned(),
        user_id: info.user_id().map(str::to_owned),
        custom_claims: info.claims_map(),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // Scalekit, with short deadlines: an outage costs each request at most 2 s, then 503.
    let scalekit = ScalekitClient::builder(
        std::env::var("SCALEKIT_ENVIRONMENT_URL")?,
        std::env::var("SCALEKIT_CLIENT_ID")?,
        std::env::var("SCALEKIT_CLIENT_SECRET")?,
    )
    .validate_timeout(Duration::from_secs(2))
    .build()?;

    // The cache hears this process's revocations (its events) before `invalidate` returns.
    let cache = CachedValidator::builder(scalekit.clone())
        .ttl(Duration::from_secs(30))
        .max_in_flight(64)
        .build();

    // Two limits per organization and per key; one allowance of refused keys per client,
    // found behind one proxy of ours through `X-Forwarded-For`.
    let per_org = RateLimitLayer::new("6000/min".parse()?)
        .by(LimitBy::Organization)
        .name("org");
    let per_key = RateLimitLayer::new("600/min".parse()?).name("key");
    let throttle = FailedKeyThrottle::default()
        .client_source(ClientSource::ForwardedFor { trusted_proxies: 1 });

    #[cfg(feature = "redis")]
    let (per_org, per_key, throttle, _feed) = {
        // Revocations and updates by any instance reach every cache; limits and the refused-key
        // allowance hold across instances. (The cache listens to `scalekit`'s events, so
        // attaching it publishes this process's revocations made through the client too.)
        let feed = axum_api_key::redis::RedisRevocations::from_env()?;
        if let Some(feed) = &feed {
            feed.attach(&cache);
        }
        match std::env::var("REDIS_URL") {
            Ok(url) => {
                let limiter = axum_api_key::ratelimit::RedisLimiter::builder(url).build()?;
                (
                    per_org.redis(limiter.clone()),
                    per_key.redis(limiter.clone()),
                    throttle.redis(limiter),
                    feed,
                )
            }
            Err(_) => (per_org, per_key, throttle, feed),
        }
    };

    let app = Router::new()
        .route("/v1/me", get(me))
        .route(
            "/v1/org",
            get(|scope: OrgScope| async move { scope.organization_id }),
        )
        .layer(per_key)
        .layer(per_org)
        .layer(
            ApiKeyLayer::new(cache)
                .realm("production")
                .failed_key_throttle(throttle),
        )
        .route("/healthz", get(|| async { "ok" }));

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
