//! [`CacheBuilder`]: the knobs of a [`CachedValidator`], with defaults that suit most APIs.

use std::fmt;
use std::time::Duration;

use super::CachedValidator;
use crate::keys::{KeyEventSource, KeyEvents};
use crate::validator::contract::Validator;

/// Default time a positive answer is reused: 30 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Default time an "invalid" answer is reused: 5 s.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Default number of positive entries: 10 000.
pub const DEFAULT_CAPACITY: u64 = 10_000;
/// Default number of negative entries: 10 000.
pub const DEFAULT_NEGATIVE_CAPACITY: u64 = 10_000;
/// Default number of upstream validations in flight at once: 32.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;
/// Default number of upstream validations that may start per second: 100 (with one second of
/// burst), so a flood of unknown keys costs at most `100 + 100 * t` upstream calls in `t`
/// seconds, whatever the number of clients.
pub const DEFAULT_MAX_UPSTREAM_RATE: u32 = 100;

/// Longest TTL or stale window accepted; longer values are clamped (moka refuses lifetimes of
/// centuries, and no revocation story survives a year-long cache anyway).
const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// Configures a [`CachedValidator`]; made by [`CachedValidator::builder`].
///
/// ```
/// use std::time::Duration;
/// use axum_api_key::InMemoryTokens;
/// use axum_api_key::cache::CachedValidator;
///
/// let cache = CachedValidator::builder(InMemoryTokens::new())
///     .ttl(Duration::from_secs(10))
///     .negative_ttl(Duration::from_secs(2))
///     .capacity(50_000)
///     .stale_if_error(Duration::from_secs(300))
///     .max_in_flight(16)
///     .max_upstream_rate(200)
///     .build();
/// ```
#[must_use]
pub struct CacheBuilder<V> {
    pub(super) inner: V,
    pub(super) ttl: Duration,
    pub(super) negative_ttl: Duration,
    pub(super) capacity: u64,
    pub(super) negative_capacity: u64,
    pub(super) stale_if_error: Option<Duration>,
    pub(super) max_in_flight: usize,
    pub(super) max_upstream_rate: Option<u32>,
    pub(super) max_tombstones: Option<usize>,
    pub(super) sources: Vec<KeyEvents>,
}

impl<V: Validator> CacheBuilder<V> {
    pub(super) fn new(inner: V) -> Self {
        Self {
            inner,
            ttl: DEFAULT_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            capacity: DEFAULT_CAPACITY,
            negative_capacity: DEFAULT_NEGATIVE_CAPACITY,
            stale_if_error: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_upstream_rate: Some(DEFAULT_MAX_UPSTREAM_RATE),
            max_tombstones: None,
            sources: Vec::new(),
        }
    }

    /// How long a positive answer is reused (default [`DEFAULT_TTL`]); never longer than the
    /// key's own expiry. This is also how long a revocation made on *another* instance can go
    /// unnoticed here. `Duration::ZERO` reuses nothing (concurrent misses still share one
    /// upstream call).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.min(MAX_LIFETIME);
        self
    }

    /// How long an "invalid" answer is reused (default [`DEFAULT_NEGATIVE_TTL`]). Negative
    /// answers live in their own cache, so a flood of garbage keys cannot evict valid ones.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl.min(MAX_LIFETIME);
        self
    }

    /// How many positive entries to keep (default [`DEFAULT_CAPACITY`], at least 1).
    pub fn capacity(mut self, entries: u64) -> Self {
        self.capacity = entries.max(1);
        self
    }

    /// How many negative entries to keep (default [`DEFAULT_NEGATIVE_CAPACITY`], at least 1).
    pub fn negative_capacity(mut self, entries: u64) -> Self {
        self.negative_capacity = entries.max(1);
        self
    }

    /// Opts in to stale-if-error: when the upstream cannot answer (down, timing out, 5xx), a
    /// key validated successfully within the last `ttl + window` is accepted as
    /// [`Authenticated::degraded`](crate::Authenticated::degraded), with a warning in the log.
    /// Unknown keys still get `Unavailable` (503); revoked and expired keys never come back, and
    /// neither does a key the upstream refused even once: a refusal ends its stale record.
    ///
    /// A spent upstream budget ([`max_in_flight`](Self::max_in_flight),
    /// [`max_upstream_rate`](Self::max_upstream_rate)) does **not** trigger stale-if-error,
    /// nor does the upstream's own rate limit (a 429, which the inner validator reports as
    /// [`ValidateError::UpstreamRateLimited`](crate::ValidateError::UpstreamRateLimited)):
    /// anyone can cause either by flooding random keys, and must not be able to switch the
    /// cache into serving old answers. Such misses get 503 with `Retry-After` (1 s for the
    /// budget, the upstream's own delay for a 429).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = Some(window.min(MAX_LIFETIME));
        self
    }

    /// How many upstream validations may be in flight at once (default
    /// [`DEFAULT_MAX_IN_FLIGHT`], at least 1). A miss beyond it is answered `Unavailable` with
    /// `retry_after` 1 s at once, never queued; cached keys are not affected, and requests
    /// waiting on a validation already in flight for the same key spend nothing.
    pub fn max_in_flight(mut self, validations: usize) -> Self {
        self.max_in_flight = validations.max(1);
        self
    }

    /// Caps how many upstream validations may start per second (GCRA through `governor`, with
    /// one second of burst; default [`DEFAULT_MAX_UPSTREAM_RATE`], at most 1 000 000). Misses
    /// beyond it are refused like those beyond [`max_in_flight`](Self::max_in_flight). Flood
    /// bound: in any `t` seconds, at most `per_second + per_second * t` upstream calls start.
    pub fn max_upstream_rate(mut self, per_second: u32) -> Self {
        self.max_upstream_rate = Some(per_second.max(1));
        self
    }

    /// How many revocations (names: a fingerprint or a token id) this cache remembers at once
    /// (default: twice the [`capacity`](Self::capacity), within 1 024 and 1 048 576; at least
    /// 1). A tombstone costs about 100 bytes whatever the token id's length, and is kept no
    /// longer than `ttl + stale window + 60 s`.
    ///
    /// Whoever can revoke (a Redis feed's publishers included) can fill it; when full, the
    /// oldest tombstone is forgotten and every answer cached before it is validated upstream
    /// again (counted in [`CacheStats::tombstones_evicted`](crate::cache::CacheStats::tombstones_evicted)),
    /// so a revoked key is still refused: a flood costs hits, never a false accept.
    ///
    /// ```
    /// use axum_api_key::InMemoryTokens;
    /// use axum_api_key::cache::CachedValidator;
    ///
    /// let cache = CachedValidator::builder(InMemoryTokens::new())
    ///     .max_tombstones(50_000)
    ///     .build();
    /// cache.revoke_token_id("key_1");
    /// assert_eq!(cache.stats().tombstones, 1);
    /// ```
    pub fn max_tombstones(mut self, names: usize) -> Self {
        self.max_tombstones = Some(names.max(1));
        self
    }

    /// Also listens to `events` (revocations, creations and updates published elsewhere, for
    /// example by an admin client that is not the validator).
    pub fn events(mut self, events: &KeyEvents) -> Self {
        self.sources.push(events.clone());
        self
    }

    /// Builds the cache and subscribes it to the inner validator's [`KeyEvents`], so a key
    /// revoked through that validator (`InMemoryTokens::invalidate`, the Scalekit client's
    /// invalidate) is refused by this cache before the revoking call returns, and a key
    /// updated through it (new claims) is asked again instead of served with its old facts.
    ///
    /// For a validator that publishes no events, use [`build_standalone`](Self::build_standalone).
    pub fn build(self) -> CachedValidator<V>
    where
        V: KeyEventSource,
    {
        let own = self.inner.key_events().clone();
        let cache = self.build_standalone();
        cache.subscribe_to(&own);
        cache
    }

    /// Builds the cache without listening to the inner validator: revocations reach it only
    /// through [`events`](Self::events) sources and the `revoke_*` methods.
    pub fn build_standalone(self) -> CachedValidator<V> {
        // quanta calibrates its TSC clock on first use (about a millisecond, at most 200 ms):
        // here, at startup, rather than in the first request that caches an answer.
        let _ = quanta::Instant::now();
        CachedValidator::from_builder(self)
    }
}

impl<V> fmt::Debug for CacheBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("capacity", &self.capacity)
            .field("negative_capacity", &self.negative_capacity)
            .field("stale_if_error", &self.stale_if_error)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_upstream_rate", &self.max_upstream_rate)
            .field("max_tombstones", &self.max_tombstones)
            .finish_non_exhaustive()
    }
}
