//! The shared state of a cache and the way one validation goes through it.
//!
//! `Core` holds everything but the inner validator, so event listeners can hold it weakly
//! without keeping the validator (which owns the event list) alive in a cycle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::future::Cache as AsyncCache;
use moka::sync::Cache as SyncCache;

use super::budget::Budget;
use super::entry::{CacheKey, Entry, FreshLifetime, KeepLifetime, PrefixHasherBuilder};
use super::front::FrontIndex;
use super::revocation::{Revocations, Verdict};
use super::stats::Counters;
use crate::keys::{KeyEvent, KeyEvents};
use crate::request::key::{ApiKey, Fingerprint};
use crate::token_info::Authenticated;
use crate::validator::contract::{InvalidReason, ValidateError, Validator};

/// What a client is told to wait when the upstream budget is spent.
const BUDGET_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Tombstones outlive every entry vetted before them by this much more than the entries' own
/// longest life, to cover the moment between a validation's check and moka's insert.
const TOMBSTONE_MARGIN: Duration = Duration::from_secs(60);

pub(super) struct Settings {
    pub(super) ttl: Duration,
    pub(super) negative_ttl: Duration,
    pub(super) capacity: u64,
    pub(super) negative_capacity: u64,
    pub(super) stale_window: Option<Duration>,
    pub(super) max_in_flight: usize,
    pub(super) max_upstream_rate: Option<u32>,
    /// Most tombstones kept; `None` derives it from `capacity`.
    pub(super) max_tombstones: Option<usize>,
}

pub(super) struct Core {
    /// A lock-free mirror of `fresh`, read first on the hit path (see `front`).
    pub(super) front: Arc<FrontIndex>,
    /// Fresh positive answers: the authority on what stays cached.
    pub(super) fresh: AsyncCache<CacheKey, Arc<Entry>, PrefixHasherBuilder>,
    /// Last good answers kept `ttl + window` for stale-if-error; `None` when it is off.
    stale: Option<SyncCache<CacheKey, Arc<Entry>, PrefixHasherBuilder>>,
    /// "Invalid" answers, bounded apart from the positive ones.
    pub(super) negative: SyncCache<CacheKey, InvalidReason, PrefixHasherBuilder>,
    /// token id -> fingerprint, so a revocation by id can evict eagerly. Correctness does not
    /// rest on it (tombstones do), so it may be lossy.
    by_token_id: SyncCache<Box<str>, Fingerprint>,
    /// fingerprint -> token id: names a revocation made by key when it is shared with other
    /// instances (which know keys by id only; fingerprints are per process). Lossy too.
    by_fingerprint: SyncCache<CacheKey, Box<str>, PrefixHasherBuilder>,
    revocations: Revocations,
    /// Hears every revocation applied here from a local source (see
    /// `CachedValidator::local_revocations`); remote ones are not echoed.
    pub(super) outbound: KeyEvents,
    /// Bumped by every `Created` event: a negative answer fetched across one is not kept.
    creations: AtomicU64,
    budget: Budget,
    pub(super) counters: Counters,
    ttl: Duration,
    stale_window: Duration,
}

/// What a cached entry may be used for right now.
pub(super) enum Admission {
    Accept,
    /// Known bad: revoked through this instance, or past its expiry.
    Refuse(InvalidReason),
    /// Cannot be vetted any more (flushed): drop it and ask the upstream.
    Recheck,
}

/// A validation's outcome that moka must not cache. Handed (in an `Arc`) to every caller that
/// waited on the same flight.
pub(super) enum NotCached {
    Invalid(InvalidReason),
    Unavailable(ValidateError),
    /// A stale answer served because the upstream could not tell.
    Degraded(Authenticated),
    /// A good answer fetched across a flush: true for this flight, not to be reused.
    Uncacheable(Authenticated),
}

impl NotCached {
    pub(super) fn to_result(&self) -> Result<Authenticated, ValidateError> {
        match self {
            Self::Invalid(reason) => Err(ValidateError::Invalid(*reason)),
            Self::Unavailable(error) => Err(error.clone()),
            Self::Degraded(auth) | Self::Uncacheable(auth) => Ok(auth.clone()),
        }
    }
}

impl Core {
    pub(super) fn new(settings: &Settings) -> Self {
        let stale_window = settings.stale_window.unwrap_or(Duration::ZERO);
        let longest_life = settings.ttl.saturating_add(stale_window);
        let front = Arc::new(FrontIndex::new(settings.capacity));
        let mirror = Arc::downgrade(&front);
        Self {
            front,
            fresh: AsyncCache::builder()
                .max_capacity(settings.capacity)
                .expire_after(FreshLifetime)
                // Whatever moka lets go of (evicted, expired, replaced, invalidated) leaves the
                // mirror too.
                .eviction_listener(move |key: Arc<CacheKey>, entry: Arc<Entry>, _cause| {
                    if let Some(front) = mirror.upgrade() {
                        front.forget_entry(&key, &entry);
                    }
                })
                .build_with_hasher(PrefixHasherBuilder),
            stale: settings.stale_window.map(|_| {
                SyncCache::builder()
                    .max_capacity(settings.capacity)
                    .expire_after(KeepLifetime)
                    .build_with_hasher(PrefixHasherBuilder)
            }),
            negative: SyncCache::builder()
                .max_capacity(settings.negative_capacity)
                .time_to_live(settings.negative_ttl)
                .build_with_hasher(PrefixHasherBuilder),
            by_token_id: SyncCache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(longest_life)
                .build(),
            by_fingerprint: SyncCache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(longest_life)
                .build_with_hasher(PrefixHasherBuilder),
            outbound: KeyEvents::new(),
            revocations: Revocations::new(
                longest_life.saturating_add(TOMBSTONE_MARGIN),
                settings
                    .max_tombstones
                    .unwrap_or_else(|| Revocations::derived_capacity(settings.capacity)),
            ),
            creations: AtomicU64::new(0),
            budget: Budget::new(settings.max_in_flight, settings.max_upstream_rate),
            counters: Counters::default(),
            ttl: settings.ttl,
            stale_window,
        }
    }

    /// Decides whether a cached entry may still be served. On the common path (no revocation
    /// anywhere since the entry was vetted, key not expiring) this is two atomic loads.
    #[inline]
    pub(super) fn admit(&self, fingerprint: Fingerprint, entry: &Entry) -> Admission {
        if entry.key_expired() {
            return Admission::Refuse(InvalidReason::Expired);
        }
        let vetted = entry.vetted_epoch.load(Ordering::Acquire);
        if vetted == self.revocations.epoch() {
            return Admission::Accept;
        }
        match self
            .revocations
            .vet(fingerprint, &entry.auth.info().token_id, vetted)
        {
            Verdict::Clear(epoch) => {
                entry.vetted_up_to(epoch);
                Admission::Accept
            }
            Verdict::Revoked => Admission::Refuse(InvalidReason::Revoked),
            Verdict::Unverifiable | Verdict::Forgotten => Admission::Recheck,
        }
    }

    /// Runs one upstream validation: the initialiser of a moka flight, so only the first of
    /// any number of concurrent callers for a key gets here. `Ok` is inserted by moka.
    pub(super) async fn fly<V: Validator>(
        &self,
        validator: &V,
        key: &ApiKey,
    ) -> Result<Arc<Entry>, NotCached> {
        let fingerprint = key.fingerprint();
        // Read before the upstream is asked: what happened during the flight is judged
        // against these.
        let started = self.revocations.epoch();
        let creations = self.creations.load(Ordering::Acquire);

        if self.revocations.is_revoked(fingerprint) {
            tracing::debug!(cache = "negative", %fingerprint, "revoked through this instance");
            return Err(NotCached::Invalid(InvalidReason::Revoked));
        }
        let Some(permit) = self.budget.try_spend() else {
            self.counters.budget_rejections.bump();
            tracing::debug!(cache = "budget", %fingerprint, "upstream validation budget spent");
            // No stale-if-error here: whoever floods random keys spends the budget, and must
            // not be able to switch the cache into "accept what was good a while ago" mode,
            // which would keep a key revoked in the dashboard alive past its TTL.
            return Err(NotCached::Unavailable(ValidateError::Unavailable {
                message: "upstream validation budget exhausted".into(),
                retry_after: Some(BUDGET_RETRY_AFTER),
            }));
        };
        self.counters.upstream_calls.bump();
        let began = Instant::now();
        let answer = validator.validate(key).await;
        drop(permit);
        let upstream_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);

        match answer {
            Ok(auth) => self.keep_answer(fingerprint, auth, started, upstream_ms),
            Err(ValidateError::Invalid(reason)) => {
                tracing::debug!(cache = "miss", %fingerprint, upstream_ms, %reason, "API key invalid");
                self.remember_invalid(fingerprint, reason, creations);
                Err(NotCached::Invalid(reason))
            }
            Err(error @ ValidateError::Unavailable { .. }) => {
                self.counters.upstream_errors.bump();
                tracing::debug!(cache = "miss", %fingerprint, upstream_ms, %error, "upstream could not tell");
                Err(self.fall_back(fingerprint, error))
            }
        }
    }

    /// A positive upstream answer: cache it unless a revocation or flush landed meanwhile.
    fn keep_answer(
        &self,
        fingerprint: Fingerprint,
        auth: Authenticated,
        started: u64,
        upstream_ms: u64,
    ) -> Result<Arc<Entry>, NotCached> {
        let token_id = auth.info().token_id.as_str();
        let epoch = match self.revocations.vet(fingerprint, token_id, started) {
            Verdict::Clear(epoch) => epoch,
            Verdict::Revoked => {
                tracing::debug!(cache = "miss", %fingerprint, token_id, upstream_ms, "revoked while being validated");
                self.remember_invalid(fingerprint, InvalidReason::Revoked, None);
                return Err(NotCached::Invalid(InvalidReason::Revoked));
            }
            Verdict::Unverifiable => {
                tracing::debug!(cache = "miss", %fingerprint, token_id, upstream_ms, "flushed while being validated; not cached");
                return Err(NotCached::Uncacheable(auth));
            }
            Verdict::Forgotten => {
                // A tombstone was forgotten (the bound was hit) during the flight: it may have
                // been this key's, so the answer cannot be used. Fail closed; a retry starts a
                // flight that the remaining tombstones and the upstream can vouch for.
                tracing::debug!(cache = "miss", %fingerprint, token_id, upstream_ms, "a revocation was forgotten while being validated; not used");
                return Err(NotCached::Unavailable(ValidateError::Unavailable {
                    message: "revocations overflowed during validation".into(),
                    retry_after: Some(BUDGET_RETRY_AFTER),
                }));
            }
        };
        let token_id: Box<str> = token_id.into();
        let Some(entry) = Entry::new(auth, self.ttl, self.stale_window, epoch) else {
            tracing::debug!(cache = "miss", %fingerprint, %token_id, upstream_ms, "upstream accepted an expired key");
            self.remember_invalid(fingerprint, InvalidReason::Expired, None);
            return Err(NotCached::Invalid(InvalidReason::Expired));
        };
        tracing::debug!(cache = "miss", %fingerprint, %token_id, upstream_ms, "API key validated");
        let entry = Arc::new(entry);
        if let Some(stale) = &self.stale {
            stale.insert(CacheKey(fingerprint), entry.clone());
        }
        self.by_fingerprint
            .insert(CacheKey(fingerprint), token_id.clone());
        self.by_token_id.insert(token_id, fingerprint);
        Ok(entry)
    }

    /// Caches an "invalid" answer, unless a key was created since the flight began (`creations`
    /// then differs; `None` skips the check for answers no creation can change).
    fn remember_invalid(
        &self,
        fingerprint: Fingerprint,
        reason: InvalidReason,
        creations: impl Into<Option<u64>>,
    ) {
        let key = CacheKey(fingerprint);
        // A refusal ends every positive record of the key: the stale one too, or a later
        // outage would serve it again (stale-if-error) although the upstream said no.
        self.evict(fingerprint);
        self.negative.insert(key, reason);
        // Checked after the insert: a `Created` landing before this load is seen here, one
        // landing after it removes the entry itself.
        let created_meanwhile = creations
            .into()
            .is_some_and(|before| self.creations.load(Ordering::Acquire) != before);
        if created_meanwhile {
            self.negative.invalidate(&key);
        }
    }

    /// The upstream could not tell: a stale answer if stale-if-error allows one, else `error`.
    /// Only for upstream faults, never for a spent budget (see `fly`).
    fn fall_back(&self, fingerprint: Fingerprint, error: ValidateError) -> NotCached {
        // Belt and braces: a key the upstream refused is never served stale, even if its stale
        // record outlived the eviction (e.g. inserted by a flight that overlapped the refusal).
        if let Some(reason) = self.negative.get(&CacheKey(fingerprint)) {
            return NotCached::Invalid(reason);
        }
        let Some(entry) = self
            .stale
            .as_ref()
            .and_then(|stale| stale.get(&CacheKey(fingerprint)))
        else {
            return NotCached::Unavailable(error);
        };
        let age = entry.validated_at.elapsed();
        if age > entry.keep_for {
            return NotCached::Unavailable(error);
        }
        match self.admit(fingerprint, &entry) {
            Admission::Accept => {
                self.counters.stale_served.bump();
                tracing::warn!(
                    cache = "stale",
                    %fingerprint,
                    token_id = %entry.auth.info().token_id,
                    age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                    %error,
                    "upstream unavailable: accepting a stale answer (stale-if-error)"
                );
                NotCached::Degraded(Authenticated::degraded(entry.auth.info_arc().clone()))
            }
            Admission::Refuse(reason) => NotCached::Invalid(reason),
            Admission::Recheck => NotCached::Unavailable(error),
        }
    }

    /// Applies a key event (from a subscription or a caller).
    pub(super) fn apply(&self, event: &KeyEvent) {
        match event {
            KeyEvent::Revoked {
                token_id,
                fingerprint,
            } => self.revoke(*fingerprint, token_id.as_deref()),
            KeyEvent::Created { fingerprint, .. } => self.forget_invalid(*fingerprint),
        }
    }

    /// Revokes a key by either of its names, from a local source (a `revoke_*` call, an event
    /// of this process), then tells [`Self::outbound`] listeners, naming the key by id when
    /// this cache knows it. Synchronous and lock-brief, so it can run in an event listener.
    pub(super) fn revoke(&self, fingerprint: Option<Fingerprint>, token_id: Option<&str>) {
        if fingerprint.is_none() && token_id.is_none() {
            return;
        }
        // Resolved before the revocation drops the index entry.
        let resolved: Option<String> = match token_id {
            Some(id) => Some(id.to_owned()),
            None => fingerprint
                .and_then(|fingerprint| self.by_fingerprint.get(&CacheKey(fingerprint)))
                .map(String::from),
        };
        self.apply_revocation(fingerprint, token_id);
        self.outbound.publish(&KeyEvent::Revoked {
            token_id: resolved,
            fingerprint,
        });
    }

    /// Revokes a key named by a remote feed: applied like a local revocation (tombstone
    /// included, so it wins over validations in flight) but not echoed to `outbound`.
    #[cfg(feature = "redis")]
    pub(super) fn revoke_remote(&self, token_id: &str) {
        self.apply_revocation(None, Some(token_id));
    }

    fn apply_revocation(&self, fingerprint: Option<Fingerprint>, token_id: Option<&str>) {
        if fingerprint.is_none() && token_id.is_none() {
            return;
        }
        let indexed = token_id.and_then(|id| {
            let fingerprint = self.by_token_id.get(id);
            self.by_token_id.invalidate(id);
            fingerprint
        });
        // The tombstone is what makes revocation win; the evictions below only free memory.
        // Tombstoning the indexed fingerprint too lets a later miss refuse the key before (and
        // without) asking the upstream, which matters when the upstream is down.
        self.revocations.revoke(fingerprint.or(indexed), token_id);
        self.counters.revocations.bump();
        match fingerprint {
            Some(fingerprint) => {
                tracing::debug!(cache = "revoke", %fingerprint, token_id, "API key revoked")
            }
            None => tracing::debug!(cache = "revoke", token_id, "API key revoked"),
        }
        for fingerprint in fingerprint.into_iter().chain(indexed) {
            self.by_fingerprint.invalidate(&CacheKey(fingerprint));
            self.evict(fingerprint);
        }
    }

    fn evict(&self, fingerprint: Fingerprint) {
        let key = CacheKey(fingerprint);
        self.front.forget(&key);
        if let Some(stale) = &self.stale {
            stale.invalidate(&key);
        }
        // moka's async cache only evicts from a task. Outside a runtime the entry stays until
        // its next hit, which the tombstone refuses (and evicts) anyway.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let fresh = self.fresh.clone();
            runtime.spawn(async move { fresh.invalidate(&key).await });
        }
    }

    /// A key was created: an "invalid" answer cached for it is now wrong.
    fn forget_invalid(&self, fingerprint: Fingerprint) {
        self.creations.fetch_add(1, Ordering::AcqRel);
        self.negative.invalidate(&CacheKey(fingerprint));
    }

    /// Forgets every positive answer (fresh and stale); answers in flight are not cached.
    pub(super) fn flush_positive(&self) {
        self.revocations.flush();
        self.counters.flushes.bump();
        self.front.clear();
        self.fresh.invalidate_all();
        if let Some(stale) = &self.stale {
            stale.invalidate_all();
        }
        self.by_token_id.invalidate_all();
        // `by_fingerprint` is kept: which id a key has does not change with a flush.
        tracing::debug!(cache = "flush", "positive answers flushed");
    }

    /// How many names are tombstoned, and how many were forgotten early (the bound was hit).
    pub(super) fn tombstone_counts(&self) -> (u64, u64) {
        self.revocations.counts()
    }

    /// Forgets every answer, positive and negative.
    pub(super) fn invalidate_all(&self) {
        self.flush_positive();
        self.negative.invalidate_all();
    }
}
