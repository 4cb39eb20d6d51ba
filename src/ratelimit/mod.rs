//! Rate limits per key, user or organization, and the failed-key throttle per client
//! (feature `ratelimit`, on by default).
//!
//! - [`RateLimitLayer`] limits authenticated requests: put it *inside*
//!   [`ApiKeyLayer`](crate::ApiKeyLayer) (`.layer(RateLimitLayer::new(..)).layer(ApiKeyLayer::new(..))`)
//!   so it reads the key's [`TokenInfo`](crate::TokenInfo). GCRA through `governor`, a
//!   [`RatePolicy`] per route group, a per-key override from the `rate_limit` claim or a
//!   function, 429 with `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit` fields
//!   (draft-ietf-httpapi-ratelimit-headers-11), and [`RateLimitInfo`] for handlers.
//! - [`FailedKeyThrottle`] counts refused keys per client ([`ClientKey`]: the peer address, a
//!   trusted `X-Forwarded-For` entry via [`forwarded_client`], or your own function), so a
//!   client flooding random keys waits without costing upstream calls.
//! - [`RedisLimiter`] (feature `redis`) shares the limits across instances: one atomic Lua
//!   script per decision (or per lease of a few tokens, local-first), a deadline on every call,
//!   local limits when Redis is down.
//!
//! ```
//! use axum::{routing::get, Router};
//! use axum_api_key::ratelimit::{LimitBy, RateLimitLayer};
//! use axum_api_key::{ApiKeyLayer, InMemoryTokens};
//!
//! let tokens = InMemoryTokens::new();
//! let reports = Router::new()
//!     .route("/reports", get(|| async { "heavy" }))
//!     .layer(RateLimitLayer::new("10/min".parse().unwrap()).name("reports").by(LimitBy::Organization));
//! let app: Router = Router::new()
//!     .route("/items", get(|| async { "light" }))
//!     .layer(RateLimitLayer::new("100/min".parse().unwrap()).name("items"))
//!     .merge(reports)
//!     .layer(ApiKeyLayer::new(tokens));
//! ```

mod bucket;
mod cells;
mod fields;
mod layer;
#[cfg(feature = "redis")]
mod lease;
mod policy;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod throttle;

pub(crate) use cells::Outcome;
pub use layer::{
    DEFAULT_CLAIM, DEFAULT_MAX_KEYS, LimitBy, RATELIMIT, RATELIMIT_POLICY, RateLimitInfo,
    RateLimitLayer,
};
#[cfg(feature = "redis")]
pub use lease::LEASE_TTL;
pub use policy::{MAX_LIMIT, PolicyError, RatePolicy};
#[cfg(feature = "redis")]
pub use redis::{
    DEFAULT_PREFIX, DEFAULT_TIMEOUT, RedisLimiter, RedisLimiterBuilder, RedisLimiterError,
    RedisLimiterStats,
};
pub use service::{RateLimit, RateLimitFuture};
pub(crate) use service::{Refusal, SuccessHeaders, add_headers, call_with_fields};
pub use throttle::{
    ClientFn, ClientKey, ClientSource, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_IN_FLIGHT_PER_CLIENT,
    FailedKeyThrottle, InFlight, RetryAfter, ThrottleStats, forwarded_client,
};
