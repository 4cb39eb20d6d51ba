//! The hit path's index: a lock-free map beside moka, read without touching moka at all.
//!
//! moka decides what stays (capacity, TinyLFU admission, TTL) and records every read for that
//! purpose, which costs a few hundred nanoseconds per hit. This index only mirrors moka's
//! contents so a hit is one lock-free lookup: it is filled when moka returns an entry, emptied by
//! moka's eviction listener, and cleared on flushes. It never decides anything on its own:
//! every entry found here is still checked for freshness (its own deadline) and admitted
//! (revocations, expiry) exactly as a moka hit is, so a lagging mirror can only cost speed.

use std::sync::Arc;

use super::entry::{CacheKey, Entry};
use super::lossy::LossyIndex;

pub(super) struct FrontIndex {
    /// Bounded the lossy way (see `lossy`): dropped wholesale above its limit, it refills from
    /// moka on the next hits, so an entry moka evicted without telling us cannot pile up.
    rows: LossyIndex<Arc<Entry>>,
}

impl FrontIndex {
    pub(super) fn new(capacity: u64) -> Self {
        Self {
            rows: LossyIndex::new(capacity),
        }
    }

    /// Applies `f` to the entry for `key`, if it is still within its fresh lifetime, without
    /// cloning the entry's `Arc` (the map's guard keeps it alive meanwhile).
    #[inline]
    pub(super) fn with<R>(&self, key: &CacheKey, f: impl FnOnce(&Arc<Entry>) -> R) -> Option<R> {
        let map = self.rows.map().pin();
        let entry = map.get(key)?;
        (quanta::Instant::now() < entry.fresh_until).then(|| f(entry))
    }

    /// The entry for `key`, fresh or not (to read what it names, not to serve it).
    pub(super) fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.rows.map().pin().get(key).cloned()
    }

    /// Mirrors an entry moka holds.
    pub(super) fn remember(&self, key: CacheKey, entry: &Arc<Entry>) {
        self.rows.insert(key, entry.clone());
    }

    /// Drops `key`.
    pub(super) fn forget(&self, key: &CacheKey) {
        self.rows.map().pin().remove(key);
    }

    /// Drops `key` if it still maps to `entry` (moka evicted that one; a newer one may have
    /// replaced it here since).
    pub(super) fn forget_entry(&self, key: &CacheKey, entry: &Arc<Entry>) {
        let _ = self
            .rows
            .map()
            .pin()
            .remove_if(key, |_, current| Arc::ptr_eq(current, entry));
    }

    /// Drops everything.
    pub(super) fn clear(&self) {
        self.rows.clear();
    }
}
