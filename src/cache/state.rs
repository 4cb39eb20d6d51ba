//! The shared state of a cache, and whether a cached entry may be served.
//!
//! `Core` holds everything but the inner validator, so event listeners can hold it weakly
//! without keeping the validator (which owns the event list) alive in a cycle. How a miss
//! reaches the upstream is in `flight`; how revocations and flushes change the state, in
//! `revoke`.

use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::future::Cache as AsyncCache;
use moka::sync::Cache as SyncCache;

use super::budget::Budget;
use super::builder::CacheBuilder;
use super::entry::{CacheKey, Entry, FreshLifetime, KeepLifetime, PrefixHasherBuilder};
use super::front::FrontIndex;
use super::ids::IdIndex;
use super::revocation::{Revocations, Verdict};
use super::stats::Counters;
use crate::keys::KeyEvents;
use crate::request::key::Fingerprint;
use crate::token_info::Authenticated;
use crate::validator::contract::InvalidReason;

/// Tombstones outlive every entry vetted before them by this much more than the entries' own
/// longest life, to cover the moment between a validation's check and moka's insert.
const TOMBSTONE_MARGIN: Duration = Duration::from_secs(60);

pub(super) struct Core {
    /// A lock-free mirror of `fresh`, read first on the hit path (see `front`).
    pub(super) front: Arc<FrontIndex>,
    /// Fresh positive answers: the authority on what stays cached.
    pub(super) fresh: AsyncCache<CacheKey, Arc<Entry>, PrefixHasherBuilder>,
    /// Last good answers kept `ttl + window` for stale-if-error; `None` when it is off.
    pub(super) stale: Option<SyncCache<CacheKey, Arc<Entry>, PrefixHasherBuilder>>,
    /// "Invalid" answers, bounded apart from the positive ones.
    pub(super) negative: SyncCache<CacheKey, InvalidReason, PrefixHasherBuilder>,
    /// token id -> fingerprint, so a revocation by id can evict eagerly. Correctness does not
    /// rest on it (tombstones do), so it may be lossy. The other direction (which id to name
    /// a key revoked by key to other instances) is read from the cached entries.
    pub(super) ids: IdIndex,
    pub(super) revocations: Revocations,
    /// Hears every revocation and update applied here from a local source (see
    /// `CachedValidator::local_revocations`); remote ones are not echoed.
    pub(super) outbound: KeyEvents,
    /// The last update this cache heard of as an event, so an update made through the cache
    /// is announced once, not again after its store announced it.
    pub(super) last_update_heard: Mutex<HeardUpdate>,
    /// Bumped by every `Created` event: a negative answer fetched across one is not kept.
    pub(super) creations: AtomicU64,
    pub(super) budget: Budget,
    pub(super) counters: Counters,
    pub(super) ttl: Duration,
    pub(super) stale_window: Duration,
}

/// The last `Updated` event applied, and how many were before it: one id and a count, so
/// bounded.
#[derive(Default)]
pub(super) struct HeardUpdate {
    pub(super) count: u64,
    pub(super) token_id: Box<str>,
}

/// What a cached entry may be used for right now.
pub(super) enum Admission {
    Accept,
    /// Known bad: revoked through this instance, or past its expiry.
    Refuse(InvalidReason),
    /// Cannot be vetted any more (flushed): drop it and ask the upstream.
    Recheck,
}

impl Core {
    pub(super) fn new<V>(settings: &CacheBuilder<V>) -> Self {
        let stale_window = settings.stale_if_error.unwrap_or(Duration::ZERO);
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
                        // Pairs with the fence in `Core::mirror`: moka's removal before this
                        // read of the mirror, the mirror's insert before that read of moka.
                        fence(Ordering::SeqCst);
                        front.forget_entry(&key, &entry);
                    }
                })
                .build_with_hasher(PrefixHasherBuilder),
            stale: settings.stale_if_error.map(|_| {
                SyncCache::builder()
                    .max_capacity(settings.capacity)
                    .expire_after(KeepLifetime)
                    .build_with_hasher(PrefixHasherBuilder)
            }),
            negative: SyncCache::builder()
                .max_capacity(settings.negative_capacity)
                .time_to_live(settings.negative_ttl)
                .build_with_hasher(PrefixHasherBuilder),
            ids: IdIndex::new(settings.capacity),
            outbound: KeyEvents::new(),
            last_update_heard: Mutex::new(HeardUpdate::default()),
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
            .vet(fingerprint, entry.auth.info().token_id(), vetted)
        {
            Verdict::Clear(epoch) => {
                entry.vetted_up_to(epoch);
                Admission::Accept
            }
            Verdict::Revoked => Admission::Refuse(InvalidReason::Revoked),
            Verdict::Unverifiable | Verdict::Forgotten => Admission::Recheck,
        }
    }

    /// Judges a fresh entry on the asynchronous path: `Some(Ok)` to serve (the mirror learns
    /// it), `Some(Err)` refused, `None` to ask the upstream again; an entry not served leaves
    /// the cache.
    pub(super) async fn judge(
        &self,
        cache_key: CacheKey,
        entry: &Arc<Entry>,
    ) -> Option<Result<Authenticated, InvalidReason>> {
        let verdict = match self.admit(cache_key.0, entry) {
            Admission::Accept => {
                self.mirror(cache_key, entry);
                return Some(Ok(entry.auth.clone()));
            }
            Admission::Refuse(reason) => Some(Err(reason)),
            Admission::Recheck => None,
        };
        self.front.forget(&cache_key);
        self.fresh.invalidate(&cache_key).await;
        verdict
    }

    /// Mirrors an entry just read from moka, unless moka let go of it meanwhile. Moka's
    /// eviction listener drops the mirror row of an entry moka removes, but a removal (an
    /// update's invalidation, an eviction) that lands between this caller's read of moka and
    /// its insert here finds no row to drop: without the second look, the row would serve the
    /// removed entry (old claims, say) until its deadline. The fences make the two sides see
    /// each other: either the listener finds the row, or this finds moka without the entry.
    /// Only a mirror miss comes here, about once per entry.
    fn mirror(&self, cache_key: CacheKey, entry: &Arc<Entry>) {
        self.front.remember(cache_key, entry);
        fence(Ordering::SeqCst);
        let held = super::poll_once(self.fresh.get(&cache_key))
            .flatten()
            .is_some_and(|current| Arc::ptr_eq(&current, entry));
        if !held {
            self.front.forget_entry(&cache_key, entry);
        }
    }

    /// Serves an entry on the spot if it may be served as it is (a hit); anything else is left
    /// to the asynchronous path, which also cleans up.
    pub(super) fn hit_now(
        &self,
        cache_key: CacheKey,
        entry: &Arc<Entry>,
        mirror: bool,
    ) -> Option<Authenticated> {
        match self.admit(cache_key.0, entry) {
            Admission::Accept => {
                if mirror {
                    self.mirror(cache_key, entry);
                }
                self.counters.hit();
                tracing::trace!(cache = "hit", fingerprint = %cache_key.0, token_id = %entry.auth.info().token_id());
                Some(entry.auth.clone())
            }
            Admission::Refuse(_) | Admission::Recheck => None,
        }
    }
}
