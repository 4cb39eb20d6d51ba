//! Which fingerprint a token id was last validated with: lets a revocation by id evict the
//! key's entries at once, and tombstone its fingerprint too.
//!
//! One compact, lock-free map replaces the two moka caches this used to take (id to
//! fingerprint, fingerprint to id): a moka entry costs hundreds of bytes of bookkeeping
//! (deques, timer wheel, frequency sketch) that an index correctness does not rest on has no
//! use for. The other direction, fingerprint to id (to name a key revoked by key to other
//! instances), is read from the cached entry itself, which carries the key's `TokenInfo`.
//!
//! Keys are the token id's keyed 128-bit [`Fingerprint`], not the id: 32 bytes a row, whatever
//! the id's length. That is the same name the tombstones give ids (see `revocation`). Two ids
//! colliding would take a 2^-128 chance, and cannot be aimed at without the process's
//! fingerprint key; even then the index only steers eager evictions and the extra fingerprint
//! tombstone. Whether a key is refused rests on the tombstones, which a hit and every flight
//! consult by the entry's own id and fingerprint.

use super::entry::CacheKey;
use super::lossy::LossyIndex;
use crate::request::key::Fingerprint;

pub(super) struct IdIndex {
    /// Bounded the lossy way (see `lossy`): dropped wholesale above its limit.
    rows: LossyIndex<Fingerprint>,
}

impl IdIndex {
    pub(super) fn new(capacity: u64) -> Self {
        Self {
            rows: LossyIndex::new(capacity),
        }
    }

    fn name(token_id: &str) -> CacheKey {
        CacheKey(Fingerprint::of(token_id))
    }

    /// Records that `token_id` was validated with the key of `fingerprint`.
    pub(super) fn insert(&self, token_id: &str, fingerprint: Fingerprint) {
        self.rows.insert(Self::name(token_id), fingerprint);
    }

    /// The fingerprint `token_id` was recorded with, if any.
    pub(super) fn get(&self, token_id: &str) -> Option<Fingerprint> {
        self.rows.map().pin().get(&Self::name(token_id)).copied()
    }

    /// Forgets `token_id`, answering the fingerprint it was recorded with.
    pub(super) fn take(&self, token_id: &str) -> Option<Fingerprint> {
        self.rows.map().pin().remove(&Self::name(token_id)).copied()
    }

    /// Drops every row.
    pub(super) fn clear(&self) {
        self.rows.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_leads_to_its_fingerprint_once() {
        let index = IdIndex::new(16);
        let fingerprint = Fingerprint::of("some key");
        index.insert("key_1", fingerprint);
        assert_eq!(index.take("key_2"), None);
        assert_eq!(index.take("key_1"), Some(fingerprint));
        assert_eq!(index.take("key_1"), None);
    }

    #[test]
    fn the_index_stays_within_its_limit() {
        let index = IdIndex::new(0);
        for n in 0..3_000 {
            index.insert(&format!("key_{n}"), Fingerprint::of(&format!("key {n}")));
            assert!(index.len() <= 1024);
        }
        // The newest row survives a wholesale drop.
        assert_eq!(index.take("key_2999"), Some(Fingerprint::of("key 2999")));
    }
}
