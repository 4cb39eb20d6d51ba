//! Bearer API-key authentication for [Axum](https://docs.rs/axum), validated through
//! [Scalekit](https://scalekit.com) or any [`Validator`] of your own.
//!
//! ```
//! use axum::{routing::get, Json, Router};
//! use axum_api_key::{ApiKeyLayer, CreateToken, InMemoryTokens, OrgScope, UserScope};
//!
//! async fn contacts(OrgScope { organization_id, .. }: OrgScope) -> Json<Vec<String>> {
//!     Json(vec![format!("contacts of {organization_id}")])
//! }
//!
//! async fn tasks(UserScope { user_id, .. }: UserScope) -> String {
//!     format!("tasks of {user_id}")
//! }
//!
//! // The embedded store; in production, the Scalekit client (feature `scalekit`).
//! let tokens = InMemoryTokens::new();
//! let created = tokens.create(CreateToken::new("org_demo").user("usr_demo")).unwrap();
//! println!("key: {}", created.key.expose_secret()); // show it to its owner once
//!
//! let app: Router = Router::new()
//!     .route("/contacts", get(contacts))
//!     .route("/tasks", get(tasks))
//!     .layer(ApiKeyLayer::new(tokens));
//! ```
//!
//! Requests flow one way: `Authorization` header → [`bearer`] parsing → local [`KeyFormat`]
//! checks → (cache →) [`Validator`] → [`Authenticated`] extension → extractors
//! ([`TokenInfo`], [`OrgScope`], [`UserScope`], [`Claims`], [`TypedClaims`]).
//!
//! | Situation | Status | Challenge |
//! |---|---|---|
//! | no `Authorization` header, or another scheme | 401 | `Bearer realm="api"` |
//! | two `Authorization` headers, `Bearer` with no token | 400 | `error="invalid_request"` |
//! | malformed, unknown, revoked or expired key; a token id; a JWT | 401 | `error="invalid_token"` |
//! | valid key lacking a scope (`UserScope` on an org key, [`RequireLayer`]) | 403 | `error="insufficient_scope"` |
//! | validator cannot tell (upstream down) | 503 + `Retry-After` | none |
//! | extractor on a route without the layer | 500 | none |
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod admin;
pub mod bearer;
#[cfg(feature = "cache")]
pub mod cache;
mod charset;
pub mod events;
mod extract;
mod key;
mod layer;
mod memory;
#[cfg(feature = "redis")]
pub mod redis;
mod reject;
mod require;
#[cfg(feature = "scalekit")]
pub mod scalekit;
#[cfg(feature = "test-util")]
pub mod testing;
mod token_info;
mod validator;

pub use admin::{CreateToken, CreatedToken, LimitError, ListTokens, TokenPage, UpdateToken};
#[cfg(feature = "cache")]
pub use cache::{CacheBuilder, CacheStats, CachedValidator};
pub use events::{KeyEvent, KeyEventListener, KeyEventSource, KeyEvents};
pub use extract::{Claims, OrgScope, TypedClaims, UserScope};
pub use key::{ApiKey, DEFAULT_MAX_KEY_LEN, Fingerprint, KeyFormat, KeyRejection};
pub use layer::{ApiKeyLayer, ApiKeyService, DEFAULT_REALM, ResponseFuture};
pub use memory::{InMemoryTokens, StoreError};
#[cfg(feature = "redis")]
pub use redis::{RedisRevocations, RedisStats};
pub use reject::{AuthRejection, RejectionKind};
pub use require::{Require, RequireLayer};
#[cfg(feature = "scalekit")]
pub use scalekit::{ScalekitClient, ScalekitClientBuilder, ScalekitError, Transport};
pub use token_info::{Authenticated, TokenInfo, TokenInfoBuilder};
pub use validator::{
    BoxValidator, DynValidator, FnValidator, InvalidReason, ValidateError, Validator, validator_fn,
};

/// Compiles the README's Rust examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
