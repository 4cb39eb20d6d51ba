//! [`RateLimitLayer`]: per-key, per-user or per-organization limits, after authentication.

use std::fmt;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};

use governor::DefaultDirectRateLimiter;
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use tower::Layer;

use super::RatePolicy;
use super::bucket::{Bucket, BucketKey, Owner};
use super::cells::Cells;
use super::fields;
use crate::request::reject::retry_after_secs;
use crate::request::reject::{AuthRejection, RejectionKind};
use crate::request::state::AuthState;
use crate::token_info::TokenInfo;

/// The custom claim read for a per-key policy unless [`RateLimitLayer::claim`] says otherwise.
pub const DEFAULT_CLAIM: &str = "rate_limit";

/// How many keys one layer tracks unless [`RateLimitLayer::max_keys`] says otherwise.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub static RATELIMIT_POLICY: HeaderName = RATELIMIT_POLICY_NAME;
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub static RATELIMIT: HeaderName = RATELIMIT_NAME;

// The names again as constants, which the answers insert: each use is built in place from
// static bytes, where cloning the statics goes through `Bytes`' clone function on every answer.
#[allow(clippy::declare_interior_mutable_const)]
pub(super) const RATELIMIT_NAME: HeaderName = HeaderName::from_static("ratelimit");
#[allow(clippy::declare_interior_mutable_const)]
pub(super) const RATELIMIT_POLICY_NAME: HeaderName = HeaderName::from_static("ratelimit-policy");

/// What a limit counts requests by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LimitBy {
    /// Each key (its `token_id`) has its own bucket. The default.
    #[default]
    Key,
    /// Each user has one bucket for all their keys in an organization (a user's keys in
    /// another organization count apart); organization-scoped keys (no user) are counted by
    /// key.
    User,
    /// Each organization has one bucket for all its keys.
    Organization,
}

type PolicyFn = Arc<dyn Fn(&TokenInfo) -> Option<RatePolicy> + Send + Sync>;

#[derive(Clone)]
pub(super) struct Config {
    pub(super) name: Arc<str>,
    pub(super) policy: RatePolicy,
    pub(super) by: LimitBy,
    pub(super) claim: Option<Arc<str>>,
    pub(super) policy_fn: Option<PolicyFn>,
    pub(super) headers_on_success: bool,
    pub(super) policy_on_success: bool,
    pub(super) max_keys: usize,
    /// The `RateLimit-Policy` value of `policy`, prepared (rebuilt by `with`).
    pub(super) policy_header: Option<(RatePolicy, HeaderValue)>,
    #[cfg(feature = "redis")]
    pub(super) redis: Option<super::redis::RedisLimiter>,
}

/// A tower [`Layer`] that limits authenticated requests, placed inside
/// [`ApiKeyLayer`](crate::ApiKeyLayer) (so it runs after it): GCRA through `governor`, one
/// bucket per key, user or organization ([`LimitBy`]).
///
/// - **Policy**: the layer's default ([`RateLimitLayer::new`]); a key's custom claim
///   `rate_limit` (e.g. `5/min`; [`claim`](Self::claim) renames it) overrides it, and a
///   [`policy_fn`](Self::policy_fn) overrides both. A malformed claim is logged (at most about
///   once a second per layer) and the default applies. Keys sharing a user's or an
///   organization's bucket but carrying different policies spend one bucket per policy:
///   alternating between them never refills a bucket.
/// - **Answers**: over the limit, 429 with `Retry-After` through the auth layer's renderer
///   ([`ApiKeyLayer::on_rejection`](crate::ApiKeyLayer::on_rejection) sees
///   [`RejectionKind::RateLimited`]), plus `RateLimit-Policy: "default";q=100;w=60` and
///   `RateLimit: "default";r=0;t=5`; successful answers carry `RateLimit` too unless
///   [`headers_on_success(false)`](Self::headers_on_success), and `RateLimit-Policy` as well
///   with [`policy_on_success(true)`](Self::policy_on_success). Handlers read the quota with
///   the [`RateLimitInfo`] extractor.
/// - **Groups**: one layer is one group's state; give each route group its own layer (and its
///   own [`name`](Self::name), which the headers and the Redis keys carry). Clones of a layer
///   share its buckets.
/// - **Anonymous requests** (under [`ApiKeyLayer::optional`](crate::ApiKeyLayer::optional)) are
///   not limited by this layer; a route without the auth layer answers 500 (a configuration
///   error, as for the extractors).
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_api_key::ratelimit::{LimitBy, RateLimitInfo, RateLimitLayer};
/// use axum_api_key::{ApiKeyLayer, InMemoryTokens};
///
/// async fn search(limit: RateLimitInfo) -> String {
///     format!("{} requests left", limit.remaining)
/// }
///
/// let tokens = InMemoryTokens::new();
/// let app: Router = Router::new()
///     .route("/search", get(search))
///     .layer(RateLimitLayer::new("100/min".parse().unwrap()).by(LimitBy::User))
///     .layer(ApiKeyLayer::new(tokens)); // the outer layer runs first
/// ```
#[derive(Clone)]
pub struct RateLimitLayer {
    pub(super) config: Arc<Config>,
    /// Ids of validated keys (users, organizations): not a client's pick, so foldhash's speed
    /// over SipHash is safe here.
    pub(super) cells: Arc<Cells<BucketKey, foldhash::fast::RandomState>>,
    pub(super) warnings: Arc<DefaultDirectRateLimiter>,
}

impl RateLimitLayer {
    /// A layer limiting each key to `policy`, named `"default"` in the headers, honouring the
    /// `rate_limit` claim, with headers on every answer.
    pub fn new(policy: RatePolicy) -> Self {
        Self {
            config: Arc::new(Config {
                name: "default".into(),
                policy,
                by: LimitBy::Key,
                claim: Some(DEFAULT_CLAIM.into()),
                policy_fn: None,
                headers_on_success: true,
                policy_on_success: false,
                max_keys: DEFAULT_MAX_KEYS,
                policy_header: Some((policy, fields::policy_value("default", policy))),
                #[cfg(feature = "redis")]
                redis: None,
            }),
            cells: Arc::new(Cells::new(DEFAULT_MAX_KEYS)),
            warnings: Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
                std::num::NonZeroU32::MIN,
            ))),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        change(config);
        config.policy_header = Some((
            config.policy,
            fields::policy_value(&config.name, config.policy),
        ));
        self
    }

    /// The policy's name in the headers and in Redis keys: up to 32 characters from
    /// `A-Z a-z 0-9 - _ .` (others are dropped; empty means `"default"`).
    #[must_use]
    pub fn name(self, name: &str) -> Self {
        let cleaned: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(32)
            .collect();
        let name = if cleaned.is_empty() {
            "default".to_owned()
        } else {
            cleaned
        };
        self.with(|config| config.name = name.into())
    }

    /// What to count requests by (default [`LimitBy::Key`]).
    #[must_use]
    pub fn by(self, by: LimitBy) -> Self {
        self.with(|config| config.by = by)
    }

    /// The custom claim holding a key's own policy (default [`DEFAULT_CLAIM`]).
    #[must_use]
    pub fn claim(self, claim: &str) -> Self {
        self.with(|config| config.claim = Some(claim.into()))
    }

    /// Ignores policies in claims: every key gets the layer's (or the [`policy_fn`](Self::policy_fn)'s).
    #[must_use]
    pub fn no_claim(self) -> Self {
        self.with(|config| config.claim = None)
    }

    /// A key's policy from a function of its [`TokenInfo`]; `None` falls back to the claim, then
    /// to the layer's policy.
    ///
    /// ```
    /// use axum_api_key::ratelimit::{RatePolicy, RateLimitLayer};
    ///
    /// let layer = RateLimitLayer::new("100/min".parse().unwrap())
    ///     .policy_fn(|info| info.has_role("batch").then(|| "10000/h".parse().unwrap()));
    /// ```
    #[must_use]
    pub fn policy_fn<F>(self, f: F) -> Self
    where
        F: Fn(&TokenInfo) -> Option<RatePolicy> + Send + Sync + 'static,
    {
        self.with(|config| config.policy_fn = Some(Arc::new(f)))
    }

    /// Whether successful answers carry the `RateLimit` field (default `true`): the quota left
    /// and when it is whole again, what a client needs to pace itself.
    #[must_use]
    pub fn headers_on_success(self, on: bool) -> Self {
        self.with(|config| config.headers_on_success = on)
    }

    /// Whether successful answers carry `RateLimit-Policy` too (default `false`; a 429 always
    /// does). The policy rarely changes, so sending it on every answer mostly costs a header
    /// per response; the draft lets a server send it in any response it likes.
    #[must_use]
    pub fn policy_on_success(self, on: bool) -> Self {
        self.with(|config| config.policy_on_success = on)
    }

    /// How many keys (users, organizations) to track at most (default [`DEFAULT_MAX_KEYS`]).
    /// Keys idle for their whole window are forgotten first, at no loss; a map full of active
    /// keys drops some at random (they restart with a full bucket).
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.cells = Arc::new(Cells::new(max_keys));
        self.with(|config| config.max_keys = max_keys)
    }

    /// Shares the limits through Redis (feature `redis`); see
    /// [`RedisLimiter`](super::RedisLimiter). Redis down or slow: this layer's local buckets
    /// decide.
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn redis(self, redis: super::redis::RedisLimiter) -> Self {
        self.with(|config| config.redis = Some(redis))
    }

    /// How many keys are tracked locally now.
    pub fn tracked_keys(&self) -> usize {
        self.cells.len()
    }

    /// The bucket a request's key spends from: its owner, and its policy.
    pub(super) fn resolve<'a>(&self, info: &'a TokenInfo) -> Bucket<'a> {
        let owner = match (self.config.by, info.user_id()) {
            (LimitBy::User, Some(user)) => Owner::User {
                organization: info.organization_id(),
                user,
            },
            (LimitBy::Organization, _) => Owner::Organization(info.organization_id()),
            (LimitBy::Key | LimitBy::User, _) => Owner::Key(info.token_id()),
        };
        Bucket {
            owner,
            policy: self.policy_of(info),
        }
    }

    /// A key's policy: the function's, else its claim's, else the layer's.
    fn policy_of(&self, info: &TokenInfo) -> RatePolicy {
        let config = &self.config;
        if let Some(policy) = config.policy_fn.as_ref().and_then(|f| f(info)) {
            return policy;
        }
        let claimed = config.claim.as_deref().and_then(|claim| info.claim(claim));
        match claimed.map(str::parse::<RatePolicy>) {
            Some(Ok(policy)) => policy,
            Some(Err(error)) => {
                self.warn_malformed_claim(info, &error);
                config.policy
            }
            None => config.policy,
        }
    }

    /// Logs a malformed policy claim, at most about once a second per layer. Out of line: the
    /// logging code would otherwise sit in the middle of every request's path.
    #[cold]
    #[inline(never)]
    fn warn_malformed_claim(&self, info: &TokenInfo, error: &dyn fmt::Display) {
        if self.warnings.check().is_ok() {
            tracing::warn!(
                token_id = %truncate(info.token_id()),
                claim = %truncate(self.config.claim.as_deref().unwrap_or_default()),
                %error,
                "malformed rate-limit claim: the route's policy applies"
            );
        }
    }

    /// `RateLimit-Policy`: the layer's own policy formatted once, a key's own on each answer.
    pub(super) fn policy_value(&self, policy: RatePolicy) -> HeaderValue {
        match &self.config.policy_header {
            Some((default, value)) if *default == policy => value.clone(),
            _ => fields::policy_value(&self.config.name, policy),
        }
    }

    /// `"name";r=<remaining>;t=<reset>`, on every admitted answer.
    pub(super) fn state_header(&self, remaining: u32, reset: Duration) -> HeaderValue {
        fields::state_value(&self.config.name, remaining, retry_after_secs(reset))
    }
}

/// Bounds a logged field.
fn truncate(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &self.config.name)
            .field("policy", &self.config.policy)
            .field("by", &self.config.by)
            .field("claim", &self.config.claim)
            .field("headers_on_success", &self.config.headers_on_success)
            .field("policy_on_success", &self.config.policy_on_success)
            .field("max_keys", &self.config.max_keys)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = super::service::RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        super::service::RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// What the limiter decided for a request, for handlers: the [`RateLimitInfo`] extractor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitInfo {
    /// The policy applied (the layer's, or the key's own).
    pub policy: RatePolicy,
    /// Requests still allowed right now.
    pub remaining: u32,
    /// When the bucket is full again.
    pub reset_after: Duration,
}

impl<S: Send + Sync> FromRequestParts<S> for RateLimitInfo {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let state = parts.extensions.get::<AuthState>();
        match state.and_then(|state| state.rate_limit) {
            Some(info) => Ok(info),
            None => Err(missing_layer(state)),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for RateLimitInfo {
    type Rejection = AuthRejection;

    /// `None` on a request the layer did not limit (an anonymous one).
    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<AuthState>()
            .and_then(|state| state.rate_limit))
    }
}

pub(super) fn missing_layer(state: Option<&AuthState>) -> AuthRejection {
    let kind = RejectionKind::MissingLayer("RateLimitLayer");
    match state {
        Some(state) => state.reject(kind),
        None => AuthRejection::without_layer(kind),
    }
}
