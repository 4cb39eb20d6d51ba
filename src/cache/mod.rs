//! [`CachedValidator`]: a short-TTL, single-flight, revocation-honest cache in front of any
//! [`Validator`].
//!
//! # What it does
//!
//! - **Hits are cheap.** Entries are keyed by the key's [`Fingerprint`] (never the key) and
//!   hashed by its first 64 bits; a hit clones one `Arc`, takes no lock and creates no span.
//! - **Single flight.** Any number of concurrent requests with the same uncached key make one
//!   upstream call; they all get its answer.
//! - **Negative cache.** "Invalid" answers are kept [`negative_ttl`](CacheBuilder::negative_ttl)
//!   in a separately bounded cache, so garbage floods neither reach the upstream twice per key
//!   nor evict valid keys. "Unavailable" answers are never cached.
//! - **Expiry clamp.** An entry never outlives the key's `expiry`; an answer for an already
//!   expired key is refused as [`InvalidReason::Expired`](crate::validator::InvalidReason::Expired).
//! - **Revocation wins.** See below.
//! - **Upstream budget.** At most [`max_in_flight`](CacheBuilder::max_in_flight) validations
//!   (and [`max_upstream_rate`](CacheBuilder::max_upstream_rate) per second, 100 by default) reach the
//!   upstream; a miss beyond that is answered `Unavailable` (503, `Retry-After: 1`) at once,
//!   while cached keys keep flowing.
//! - **Stale-if-error** (opt-in, [`stale_if_error`](CacheBuilder::stale_if_error)).
//!
//! # How stale can an answer be?
//!
//! | Revoked through... | Refused by this cache |
//! |---|---|
//! | this instance: the inner validator's `invalidate` (events), a subscribed [`KeyEvents`], or [`CachedValidator::revoke_token_id`] & co. | before the revoking call returns, even if a validation of that key is in flight |
//! | another instance, through the crate, with a Redis feed attached (feature `redis`, `RedisRevocations`) | about one network hop later; within the `ttl` while Redis is unreachable |
//! | anywhere else (another instance, Scalekit's dashboard) | within the [`ttl`](CacheBuilder::ttl) (default 30 s), or at once after [`flush_positive`](CachedValidator::flush_positive) |
//! | anywhere else, with stale-if-error on and the upstream down | up to `ttl + window`: the price of staying up during an outage; never after the upstream refused the key once, and never because the budget is spent or the upstream rate-limits ([`ValidateError::UpstreamRateLimited`]) |
//!
//! A key is never accepted past its own `expiry`, fresh or stale.
//!
//! Revocations made here are kept as tombstones (for `ttl + window + 60 s`), checked after
//! every upstream answer and on any hit that follows a revocation, because moka cannot stop a
//! validation already in flight from inserting its answer after an eviction. They are bounded
//! ([`max_tombstones`](CacheBuilder::max_tombstones)): past the bound the oldest is forgotten
//! and every answer cached before it is asked upstream again, so a flood of revocations costs
//! hits, never a revoked key's acceptance.
//!
//! ```
//! use axum::{routing::get, Router};
//! use axum_api_key::{ApiKeyLayer, InMemoryTokens, OrgScope};
//! use axum_api_key::cache::CachedValidator;
//! use axum_api_key::keys::CreateToken;
//!
//! async fn whoami(OrgScope { organization_id, .. }: OrgScope) -> String {
//!     organization_id
//! }
//!
//! let tokens = InMemoryTokens::new();
//! // Subscribed to `tokens`' events: `tokens.invalidate(..)` is honoured by the cache at once.
//! let cache = CachedValidator::builder(tokens.clone()).build();
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .layer(ApiKeyLayer::new(cache.clone()));
//!
//! let created = tokens.create(CreateToken::new("org_1")).unwrap();
//! tokens.invalidate(&created.token_id); // or cache.revoke_token_id(&created.token_id)
//! assert_eq!(cache.stats().revocations, 1);
//! ```

mod budget;
mod builder;
mod entry;
mod flight;
mod front;
mod ids;
mod lossy;
#[cfg(test)]
mod memory_tests;
mod revocation;
mod revoke;
mod state;
mod stats;
mod store;

use std::fmt;
use std::sync::{Arc, Weak};

pub use builder::{
    CacheBuilder, DEFAULT_CAPACITY, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_UPSTREAM_RATE,
    DEFAULT_NEGATIVE_CAPACITY, DEFAULT_NEGATIVE_TTL, DEFAULT_TTL,
};
pub use stats::CacheStats;

use self::entry::CacheKey;
use self::state::Core;
use crate::keys::{KeyEvent, KeyEventListener, KeyEventSource, KeyEvents};
use crate::request::key::{ApiKey, Fingerprint, KeyFormat};
use crate::token_info::Authenticated;
use crate::validator::contract::{FingerprintLookup, ValidateError, Validator};

/// A [`Validator`] that caches another one; see the [module docs](self) for what it
/// guarantees and how stale an answer can be.
///
/// Clones share the cache: keep one to revoke keys or read [`stats`](Self::stats) and give
/// another to the [`ApiKeyLayer`](crate::ApiKeyLayer).
///
/// ```
/// use axum_api_key::{TokenInfo, validator_fn};
/// use axum_api_key::cache::CachedValidator;
///
/// // A validator with no events of its own: revocations come through `revoke_*` calls.
/// let upstream = validator_fn(|_key| async { Ok(TokenInfo::builder("key_1", "org_1").build()) });
/// let cache = CachedValidator::builder(upstream).build_standalone();
/// cache.revoke_token_id("key_1");
/// ```
pub struct CachedValidator<V> {
    inner: Arc<V>,
    core: Arc<Core>,
}

impl<V: Validator> CachedValidator<V> {
    /// Starts configuring a cache in front of `inner`.
    pub fn builder(inner: V) -> CacheBuilder<V> {
        CacheBuilder::new(inner)
    }

    /// A cache with the default settings, subscribed to `inner`'s events.
    pub fn new(inner: V) -> Self
    where
        V: KeyEventSource,
    {
        Self::builder(inner).build()
    }

    pub(crate) fn from_builder(builder: CacheBuilder<V>) -> Self {
        let cache = Self {
            core: Arc::new(Core::new(&builder)),
            inner: Arc::new(builder.inner),
        };
        for events in &builder.sources {
            cache.subscribe_to(events);
        }
        cache
    }

    /// Validates through the cache (what the [`Validator`] impl does).
    ///
    /// The layer comes here only after [`Validator::validate_fingerprint_now`] missed, so the
    /// mirror is not probed again; moka is asked once more because that lookup may have been
    /// cut short (it would have waited for housekeeping).
    async fn validate_cached(&self, key: &ApiKey) -> Result<Authenticated, ValidateError> {
        let fingerprint = key.fingerprint();
        let cache_key = CacheKey(fingerprint);
        if let Some(entry) = self.core.fresh.get(&cache_key).await {
            match self.core.judge(cache_key, &entry).await {
                Some(Ok(auth)) => {
                    self.core.counters.hit();
                    tracing::trace!(cache = "hit", %fingerprint, token_id = %auth.info().token_id());
                    return Ok(auth);
                }
                Some(Err(reason)) => {
                    self.core.counters.negative_hit();
                    tracing::debug!(cache = "negative", %fingerprint, %reason, "cached API key refused");
                    return Err(ValidateError::Invalid(reason));
                }
                None => {}
            }
        }
        if let Some(reason) = self.core.negative.get(&cache_key) {
            self.core.counters.negative_hit();
            tracing::trace!(cache = "negative", %fingerprint, %reason);
            return Err(ValidateError::Invalid(reason));
        }
        self.core.counters.miss();
        self.miss(key, cache_key).await
    }

    /// Joins (or starts) the one upstream validation of this key.
    async fn miss(
        &self,
        key: &ApiKey,
        cache_key: CacheKey,
    ) -> Result<Authenticated, ValidateError> {
        // A second round only if a flush lands between moka's insert and our check.
        for _ in 0..2 {
            let flight = self
                .core
                .fresh
                .try_get_with(cache_key, self.core.fly(&*self.inner, key))
                .await;
            let entry = match flight {
                Ok(entry) => entry,
                // Uncacheable and stale answers are admitted again, as cached ones are below.
                Err(not_cached) => return self.core.readmit_uncached(cache_key.0, &not_cached),
            };
            // The entry may have been inserted after a revocation that its flight's own check
            // missed: vet it like any hit.
            match self.core.judge(cache_key, &entry).await {
                Some(answer) => return answer.map_err(ValidateError::Invalid),
                None => continue,
            }
        }
        Err(flight::flushed_during_validation())
    }
}

impl<V> CachedValidator<V> {
    /// The validator behind the cache.
    pub fn inner(&self) -> &V {
        &self.inner
    }

    /// Revokes a key by its id (the usual admin case): once this returns, this cache refuses
    /// the key, including the answer of a validation already in flight. Unknown ids are fine.
    ///
    /// Synchronous and quick: callable from an event listener or a background task (a
    /// pub/sub subscriber, say).
    pub fn revoke_token_id(&self, token_id: &str) {
        self.core.revoke(None, Some(token_id));
    }

    /// Revokes a key by the key itself; see [`revoke_token_id`](Self::revoke_token_id).
    pub fn revoke_key(&self, key: &ApiKey) {
        self.revoke_fingerprint(key.fingerprint());
    }

    /// Revokes a key by its fingerprint; see [`revoke_token_id`](Self::revoke_token_id).
    pub fn revoke_fingerprint(&self, fingerprint: Fingerprint) {
        self.core.revoke(Some(fingerprint), None);
    }

    /// Applies a [`KeyEvent`]: `Revoked` revokes, `Created` forgets a cached "invalid" answer
    /// for the new key, `Updated` forgets the key's cached answers (its facts changed). This is
    /// what subscriptions call.
    pub fn apply_event(&self, event: &KeyEvent) {
        self.core.apply(event);
    }

    /// Listens to `events` from now on. The subscription holds the cache weakly: it does not
    /// keep a dropped cache alive (it then ignores events).
    pub fn subscribe_to(&self, events: &KeyEvents) {
        events.subscribe(Arc::new(Subscription(Arc::downgrade(&self.core))));
    }

    /// Forgets every positive answer, fresh and stale, and keeps answers now in flight from
    /// being cached. Call it after any gap in a revocation feed (a pub/sub reconnect): every key
    /// is then validated upstream again.
    pub fn flush_positive(&self) {
        self.core.flush_positive();
    }

    /// Forgets everything: positive answers as [`flush_positive`](Self::flush_positive) does,
    /// and negative ones.
    pub fn invalidate_all(&self) {
        self.core.invalidate_all();
    }

    /// Every revocation and update this cache applies from a local source, told to listeners
    /// right after it is applied: [`revoke_token_id`](Self::revoke_token_id) & co.,
    /// [`apply_event`](Self::apply_event), the events of the sources it is subscribed to (its
    /// inner validator's, say), and updates made through the cache as a
    /// [`KeyStore`](crate::keys::KeyStore) (once each, whether or not its store announced them
    /// too). A revocation made by key carries the key's token id when this cache has seen the
    /// key validated. Events received from a remote feed are not repeated here, so a feed can
    /// listen to this without echoing its own messages back.
    ///
    /// This is how `RedisRevocations` (feature `redis`)
    /// hears what to publish.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use axum_api_key::InMemoryTokens;
    /// use axum_api_key::cache::CachedValidator;
    /// use axum_api_key::keys::{KeyEvent, KeyEventListener};
    ///
    /// struct Log;
    /// impl KeyEventListener for Log {
    ///     fn on_event(&self, event: &KeyEvent) {
    ///         println!("applied here: {event:?}");
    ///     }
    /// }
    ///
    /// let cache = CachedValidator::new(InMemoryTokens::new());
    /// cache.local_revocations().subscribe(Arc::new(Log));
    /// cache.revoke_token_id("key_1"); // prints
    /// ```
    pub fn local_revocations(&self) -> &KeyEvents {
        &self.core.outbound
    }

    /// A handle for a remote revocation feed: holds the cache weakly.
    #[cfg(feature = "redis")]
    pub(crate) fn remote_handle(&self) -> RemoteHandle {
        RemoteHandle(Arc::downgrade(&self.core))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let mut stats = self.core.counters.snapshot(
            self.core.fresh.entry_count(),
            self.core.negative.entry_count(),
        );
        (stats.tombstones, stats.tombstones_evicted) = self.core.tombstone_counts();
        stats
    }
}

impl<V: Validator> Validator for CachedValidator<V> {
    /// The inner validator's: the cache accepts no key its upstream would refuse locally.
    fn key_format(&self) -> KeyFormat {
        self.inner.key_format()
    }

    async fn validate(&self, key: &ApiKey) -> Result<Authenticated, ValidateError> {
        self.validate_cached(key).await
    }

    /// Cache hits (fresh positive, or negative) answered on the spot; anything else (a miss,
    /// an entry to re-check, a lookup that would wait) goes the asynchronous way.
    fn validate_now(&self, key: &ApiKey) -> Option<Result<Authenticated, ValidateError>> {
        match self.validate_fingerprint_now(key.fingerprint()) {
            FingerprintLookup::Answered(answer) => Some(answer),
            _ => None,
        }
    }

    /// What [`validate_now`](Self::validate_now) does, from the fingerprint alone: the layer
    /// makes no copy of the key on a hit.
    fn validate_fingerprint_now(&self, fingerprint: Fingerprint) -> FingerprintLookup {
        let cache_key = CacheKey(fingerprint);
        let answered = |hit: Option<Authenticated>| {
            hit.map_or(FingerprintLookup::Missed, |auth| {
                FingerprintLookup::Answered(Ok(auth))
            })
        };
        // The mirror first: one lock-free lookup, no bookkeeping.
        let front = self.core.front.with(&cache_key, |entry| {
            self.core.hit_now(cache_key, entry, false)
        });
        if let Some(hit) = front {
            return answered(hit);
        }
        match poll_once(self.core.fresh.get(&cache_key)) {
            None => FingerprintLookup::Missed,
            Some(Some(entry)) => answered(self.core.hit_now(cache_key, &entry, true)),
            Some(None) => match self.core.negative.get(&cache_key) {
                Some(reason) => {
                    self.core.counters.negative_hit();
                    tracing::trace!(cache = "negative", %fingerprint, %reason);
                    FingerprintLookup::Answered(Err(ValidateError::Invalid(reason)))
                }
                None => FingerprintLookup::Missed,
            },
        }
    }
}

/// Polls `future` once, with a waker that does nothing: its output if it is ready at once.
/// moka's `get` and `invalidate` are ready at once unless they would wait for housekeeping or
/// a key lock; dropping them then is safe (moka's futures are cancel-safe), and the caller
/// takes the asynchronous path instead.
pub(super) fn poll_once<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// The cache forwards its inner validator's events, so wrappers further out can subscribe.
impl<V: KeyEventSource> KeyEventSource for CachedValidator<V> {
    fn key_events(&self) -> &KeyEvents {
        self.inner.key_events()
    }
}

impl<V> Clone for CachedValidator<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
        }
    }
}

impl<V> fmt::Debug for CachedValidator<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedValidator")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A cache's subscription to a [`KeyEvents`] list; weak, to break the cycle validator ->
/// events -> listener -> cache -> validator.
struct Subscription(Weak<Core>);

impl KeyEventListener for Subscription {
    fn on_event(&self, event: &KeyEvent) {
        if let Some(core) = self.0.upgrade() {
            core.apply(event);
        }
    }
}

/// What a remote revocation feed may do to a cache, held weakly so a feed does not keep a
/// dropped cache alive.
#[cfg(feature = "redis")]
#[derive(Clone)]
pub(crate) struct RemoteHandle(Weak<Core>);

#[cfg(feature = "redis")]
impl RemoteHandle {
    /// Revokes `token_id` as a local revocation would (tombstone included), without telling
    /// [`CachedValidator::local_revocations`]. `false` once the cache is gone.
    pub(crate) fn revoke_token_id(&self, token_id: &str) -> bool {
        self.0
            .upgrade()
            .map(|core| core.revoke_remote(token_id))
            .is_some()
    }

    /// Forgets what the cache knows of `token_id`'s facts (updated on another instance),
    /// without telling [`CachedValidator::local_revocations`]. `false` once the cache is gone.
    pub(crate) fn forget_facts(&self, token_id: &str) -> bool {
        self.0
            .upgrade()
            .map(|core| core.forget_facts_soon(token_id))
            .is_some()
    }

    /// [`CachedValidator::flush_positive`]. `false` once the cache is gone.
    pub(crate) fn flush_positive(&self) -> bool {
        self.0.upgrade().map(|core| core.flush_positive()).is_some()
    }

    /// `true` while the cache lives.
    pub(crate) fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}
