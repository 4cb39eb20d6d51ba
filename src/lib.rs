//! Bearer API-key authentication for [Axum](https://docs.rs/axum), validated through
//! [Scalekit](https://scalekit.com) or any [`Validator`] of your own.
//!
//! ```
//! use axum::{routing::get, Json, Router};
//! use axum_api_key::keys::CreateToken;
//! use axum_api_key::{ApiKeyLayer, Claims, InMemoryTokens, OrgScope, UserScope};
//!
//! async fn contacts(OrgScope { organization_id, .. }: OrgScope) -> Json<Vec<String>> {
//!     Json(vec![format!("contacts of {organization_id}")]) // filter by organization
//! }
//!
//! async fn tasks(UserScope { user_id, .. }: UserScope) -> String {
//!     format!("tasks of {user_id}") // organization keys get 403 here
//! }
//!
//! async fn deploy(claims: Claims) -> &'static str {
//!     if claims.get("environment") == Some("production") { "deploying" } else { "refused" }
//! }
//!
//! // The embedded store; in production, `scalekit::ScalekitClient` (feature `scalekit`).
//! let tokens = InMemoryTokens::new();
//! let created = tokens.create(CreateToken::new("org_demo").user("usr_demo")).unwrap();
//! println!("key: {}", created.key.expose_secret()); // show it to its owner once
//!
//! let app: Router = Router::new()
//!     .route("/contacts", get(contacts))
//!     .route("/tasks", get(tasks))
//!     .route("/deploy", get(deploy))
//!     .layer(ApiKeyLayer::new(tokens));
//! ```
//!
//! # The data path
//!
//! A request flows one way, through the modules of [`request`]:
//!
//! `Authorization: Bearer <key>` → [`bearer_token`](request::bearer_token) (strict RFC 6750)
//! → local checks against the validator's [`KeyFormat`](request::KeyFormat) (no network call
//! for what cannot be a key) → the [`Validator`] (optionally behind `cache::CachedValidator`)
//! → an [`Authenticated`] request extension → the extractors ([`TokenInfo`], [`OrgScope`],
//! [`UserScope`], [`Claims`], [`TypedClaims`]) and guards ([`RequireLayer`]).
//!
//! | Situation | Status | Challenge |
//! |---|---|---|
//! | no `Authorization` header, or another scheme | 401 | `Bearer realm="api"` |
//! | two `Authorization` headers, `Bearer` with no token | 400 | `error="invalid_request"` |
//! | malformed, unknown, revoked or expired key; a key id; a JWT | 401 | `error="invalid_token"` |
//! | valid key lacking a scope (`UserScope` on an org key, [`RequireLayer`]) | 403 | `error="insufficient_scope"` |
//! | validator cannot tell (upstream down) | 503 + `Retry-After` | none |
//! | extractor on a route without the layer | 500 | none |
//!
//! Keys are managed (created, listed, rotated, revoked) through one contract, [`KeyStore`],
//! implemented by [`InMemoryTokens`] and the Scalekit client: see [`keys`].
//!
//! # Feature flags
//!
//! | Feature | Default | What it adds |
//! |---|---|---|
//! | `scalekit` | yes | `scalekit::ScalekitClient`: Scalekit's token API (validate and manage keys) |
//! | `cache` | yes | `cache::CachedValidator`: short-TTL, single-flight, revocation-honest cache |
//! | `manage` | yes | `manage::KeyManagement`: a mountable key-management API and page for your customers |
//! | `ratelimit` | yes | `ratelimit::RateLimitLayer` (per key, user or organization) and the failed-key throttle the layer runs by default |
//! | `redis` | no | `redis::RedisRevocations`: revocations shared by every instance; rate limits shared over Redis |
//! | `grpc` | no | the Scalekit client over gRPC (tonic), the transport of the official SDKs |
//! | `metrics` | no | Prometheus-style series through the `metrics` facade ([`telemetry`]) |
//! | `test-util` | no | `testing::FakeScalekit`: a loopback fake of Scalekit for your tests |
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod keys;
pub mod request;
pub mod validator;

#[cfg(feature = "cache")]
pub mod cache;
#[cfg(feature = "manage")]
pub mod manage;
#[cfg(feature = "ratelimit")]
pub mod ratelimit;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "scalekit")]
pub mod scalekit;
/// What Scalekit's keys and ids look like (the rest of this module needs feature `scalekit`).
#[cfg(not(feature = "scalekit"))]
pub mod scalekit {
    pub mod shape;
}
#[cfg(feature = "test-util")]
pub mod testing;

pub mod telemetry;
mod token_info;

pub use keys::KeyStore;
pub use keys::memory::InMemoryTokens;
pub use request::extract::{Claims, OrgScope, TypedClaims, UserScope};
pub use request::key::ApiKey;
pub use request::layer::ApiKeyLayer;
pub use request::reject::AuthRejection;
pub use request::require::RequireLayer;
pub use token_info::{Authenticated, TokenInfo};
pub use validator::contract::{ValidateError, Validator};
pub use validator::function::validator_fn;

/// Compiles the README's Rust examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
