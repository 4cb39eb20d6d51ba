//! Counters for [`CacheStats`](super::CacheStats): relaxed atomics, one increment per event.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`CachedValidator`](super::CachedValidator)'s counters.
///
/// Every validation counts once as a hit, a negative hit or a miss; `stale_served` and
/// `budget_rejections` are subsets of the misses. `entries` and `negative_entries` are moka's
/// approximate counts (they lag until its housekeeping runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Validations answered from a fresh positive entry.
    pub hits: u64,
    /// Validations that were not answered from the cache (coalesced waiters included).
    pub misses: u64,
    /// Validations answered "invalid" from the negative cache.
    pub negative_hits: u64,
    /// Degraded answers served from a stale record while the upstream was unavailable.
    pub stale_served: u64,
    /// Calls made to the inner validator.
    pub upstream_calls: u64,
    /// Inner validator calls that answered `Unavailable`.
    pub upstream_errors: u64,
    /// Misses refused because the upstream budget was spent.
    pub budget_rejections: u64,
    /// Revocations applied (events, `revoke_*` calls).
    pub revocations: u64,
    /// Flushes (`invalidate_all`, `flush_positive`).
    pub flushes: u64,
    /// Positive entries (approximate).
    pub entries: u64,
    /// Negative entries (approximate).
    pub negative_entries: u64,
    /// Tombstones kept now (a revocation keeps one per name: fingerprint, token id); never
    /// more than [`max_tombstones`](super::CacheBuilder::max_tombstones).
    pub tombstones: u64,
    /// Tombstones forgotten before their time because the bound was reached; each made the
    /// answers cached before it be asked upstream again.
    pub tombstones_evicted: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) hits: Counter,
    pub(super) misses: Counter,
    pub(super) negative_hits: Counter,
    pub(super) stale_served: Counter,
    pub(super) upstream_calls: Counter,
    pub(super) upstream_errors: Counter,
    pub(super) budget_rejections: Counter,
    pub(super) revocations: Counter,
    pub(super) flushes: Counter,
}

impl Counters {
    // The lookup outcomes: each counted here and in the `metrics` series at once, so no
    // lookup site can count one and forget the other.
    pub(super) fn hit(&self) {
        self.hits.bump();
        crate::telemetry::cache_lookup("hit");
    }
    pub(super) fn miss(&self) {
        self.misses.bump();
        crate::telemetry::cache_lookup("miss");
    }
    pub(super) fn negative_hit(&self) {
        self.negative_hits.bump();
        crate::telemetry::cache_lookup("negative");
    }
    pub(super) fn stale_served(&self) {
        self.stale_served.bump();
        crate::telemetry::cache_lookup("stale");
    }

    pub(super) fn snapshot(&self, entries: u64, negative_entries: u64) -> CacheStats {
        CacheStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            negative_hits: self.negative_hits.get(),
            stale_served: self.stale_served.get(),
            upstream_calls: self.upstream_calls.get(),
            upstream_errors: self.upstream_errors.get(),
            budget_rejections: self.budget_rejections.get(),
            revocations: self.revocations.get(),
            flushes: self.flushes.get(),
            entries,
            negative_entries,
            tombstones: 0,
            tombstones_evicted: 0,
        }
    }
}

#[derive(Default)]
pub(super) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(super) fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
