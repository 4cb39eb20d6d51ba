//! The bounding both lock-free side indexes of the cache share (the hit path's mirror and the
//! token-id index): rows keyed by a 128-bit fingerprint, and, above a limit tied to the
//! cache's capacity, dropped wholesale. Both are lossy by design (their own docs say what a
//! missing row costs), so a wholesale drop is safe, and rows of entries long evicted cannot
//! pile up.

use super::entry::{CacheKey, PrefixHasherBuilder};

pub(super) type Map<V> = papaya::HashMap<CacheKey, V, PrefixHasherBuilder>;

pub(super) struct LossyIndex<V> {
    map: Map<V>,
    limit: usize,
}

impl<V: Send + Sync + 'static> LossyIndex<V> {
    /// An index for a cache of `capacity` entries: at most twice that many rows, plus 1,024.
    pub(super) fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Self {
            map: papaya::HashMap::builder()
                .hasher(PrefixHasherBuilder)
                .build(),
            limit: capacity.saturating_mul(2).saturating_add(1024),
        }
    }

    /// Inserts a row, first dropping every row when the index is at its limit.
    pub(super) fn insert(&self, key: CacheKey, value: V) {
        let map = self.map.pin();
        if map.len() >= self.limit {
            map.clear();
        }
        map.insert(key, value);
    }

    /// The map, to read and remove rows (inserts go through [`insert`](Self::insert)).
    pub(super) fn map(&self) -> &Map<V> {
        &self.map
    }

    /// Drops every row.
    pub(super) fn clear(&self) {
        self.map.pin().clear();
    }
}
