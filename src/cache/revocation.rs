//! Tombstones and the revocation epoch: what makes a revocation win over in-flight validations.
//!
//! moka's `invalidate` does not stop an initialisation already in flight from inserting its
//! (now wrong) answer afterwards. So a revocation here is not an eviction but a *tombstone*,
//! written synchronously under a short lock together with a bump of a global epoch:
//!
//! - a validation, once its upstream answer is in, looks for a tombstone of its fingerprint or
//!   its token id and, if there is one, answers `Revoked` and caches nothing;
//! - every cached entry remembers the epoch up to which it was vetted; a hit whose epoch equals
//!   the current one (no revocation anywhere since) is served without touching the lock, and
//!   any other hit is vetted again against the tombstones. That closes the gap between a
//!   validation's check and moka's insert.
//!
//! Evicting the entry is then housekeeping, done as soon as convenient. A "floor" epoch marks
//! entries that can no longer be vetted (vetted before a flush, or before a tombstone that has
//! since been pruned): those are dropped and validated again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::entry::{CacheKey, PrefixHasherBuilder};
use crate::request::key::Fingerprint;

/// Fewest tombstones worth a pruning pass.
const PRUNE_THRESHOLD: usize = 1024;

pub(super) struct Revocations {
    /// Bumped (under the write lock) by every revocation and flush.
    epoch: AtomicU64,
    tombstones: RwLock<Tombstones>,
    /// How long a tombstone is kept: longer than any entry vetted before it can live.
    retention: Duration,
}

struct Tombstones {
    by_fingerprint: HashMap<CacheKey, Stone, PrefixHasherBuilder>,
    by_token_id: HashMap<Box<str>, Stone>,
    /// Entries vetted before this epoch cannot be vetted any more.
    floor: u64,
    prune_at: usize,
}

#[derive(Clone, Copy)]
struct Stone {
    epoch: u64,
    at: Instant,
}

/// What the tombstones say about a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// No tombstone: the key was not revoked through this instance up to this epoch.
    Clear(u64),
    /// Revoked through this instance.
    Revoked,
    /// Cannot tell (a flush, or a pruned tombstone, since `since`): ask the upstream again.
    Unverifiable,
}

impl Revocations {
    pub(super) fn new(retention: Duration) -> Self {
        Self {
            epoch: AtomicU64::new(0),
            tombstones: RwLock::new(Tombstones {
                by_fingerprint: HashMap::default(),
                by_token_id: HashMap::new(),
                floor: 0,
                prune_at: PRUNE_THRESHOLD,
            }),
            retention,
        }
    }

    /// The current epoch: the hit path's only contact with this type.
    #[inline]
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Records a revocation. Once this returns, no validation, in flight or not, can make this
    /// instance accept the key.
    pub(super) fn revoke(&self, fingerprint: Option<Fingerprint>, token_id: Option<&str>) {
        let mut tombstones = self.write();
        let stone = Stone {
            epoch: self.epoch.load(Ordering::Relaxed) + 1,
            at: Instant::now(),
        };
        if let Some(fingerprint) = fingerprint {
            tombstones
                .by_fingerprint
                .insert(CacheKey(fingerprint), stone);
        }
        if let Some(token_id) = token_id {
            tombstones.by_token_id.insert(token_id.into(), stone);
        }
        tombstones.prune(self.retention);
        // Published last, under the lock: whoever sees the new epoch sees the tombstone.
        self.epoch.store(stone.epoch, Ordering::Release);
    }

    /// Marks every entry vetted so far as unverifiable (after a gap in the revocation feed).
    pub(super) fn flush(&self) {
        let mut tombstones = self.write();
        let epoch = self.epoch.load(Ordering::Relaxed) + 1;
        tombstones.floor = epoch;
        self.epoch.store(epoch, Ordering::Release);
    }

    /// Looks for a tombstone of either name of the key, for an answer or entry vetted up to
    /// `since`.
    pub(super) fn vet(&self, fingerprint: Fingerprint, token_id: &str, since: u64) -> Verdict {
        let tombstones = self
            .tombstones
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        // Revocation is final (a key is never un-revoked), so any tombstone wins, not only
        // those newer than `since`.
        if tombstones
            .by_fingerprint
            .contains_key(&CacheKey(fingerprint))
            || tombstones.by_token_id.contains_key(token_id)
        {
            return Verdict::Revoked;
        }
        if since < tombstones.floor {
            return Verdict::Unverifiable;
        }
        Verdict::Clear(self.epoch.load(Ordering::Acquire))
    }

    /// `true` when the key was revoked by fingerprint (or by an id this cache could map to
    /// it): a miss can then be refused without asking the upstream.
    pub(super) fn is_revoked(&self, fingerprint: Fingerprint) -> bool {
        self.tombstones
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_fingerprint
            .contains_key(&CacheKey(fingerprint))
    }

    /// How many tombstones are kept (for tests and stats).
    #[cfg(test)]
    fn len(&self) -> usize {
        let tombstones = self
            .tombstones
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        tombstones.by_fingerprint.len() + tombstones.by_token_id.len()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tombstones> {
        self.tombstones
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Tombstones {
    /// Drops tombstones older than `retention`, raising the floor past them, once the maps have
    /// doubled since the last pass (amortised O(1) per revocation).
    fn prune(&mut self, retention: Duration) {
        let len = self.by_fingerprint.len() + self.by_token_id.len();
        if len < self.prune_at {
            return;
        }
        let mut floor = self.floor;
        let mut keep = |stone: &mut Stone| {
            let keep = stone.at.elapsed() < retention;
            if !keep {
                floor = floor.max(stone.epoch);
            }
            keep
        };
        self.by_fingerprint.retain(|_, stone| keep(stone));
        self.by_token_id.retain(|_, stone| keep(stone));
        self.floor = floor;
        let len = self.by_fingerprint.len() + self.by_token_id.len();
        self.prune_at = (len * 2).max(PRUNE_THRESHOLD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_bumps_the_epoch_and_is_final() {
        let revocations = Revocations::new(Duration::from_secs(60));
        let fingerprint = Fingerprint::of("k");
        let before = revocations.epoch();
        assert_eq!(
            revocations.vet(fingerprint, "apit_1", before),
            Verdict::Clear(before)
        );
        revocations.revoke(None, Some("apit_1"));
        assert!(revocations.epoch() > before);
        assert_eq!(
            revocations.vet(fingerprint, "apit_1", revocations.epoch()),
            Verdict::Revoked
        );
        revocations.revoke(Some(fingerprint), None);
        assert_eq!(revocations.vet(fingerprint, "apit_2", 0), Verdict::Revoked);
    }

    #[test]
    fn a_flush_makes_older_entries_unverifiable() {
        let revocations = Revocations::new(Duration::from_secs(60));
        let fingerprint = Fingerprint::of("k");
        let vetted = revocations.epoch();
        revocations.flush();
        assert_eq!(
            revocations.vet(fingerprint, "apit_1", vetted),
            Verdict::Unverifiable
        );
        let now = revocations.epoch();
        assert_eq!(
            revocations.vet(fingerprint, "apit_1", now),
            Verdict::Clear(now)
        );
    }

    #[test]
    fn pruning_raises_the_floor() {
        let revocations = Revocations::new(Duration::ZERO);
        for i in 0..PRUNE_THRESHOLD + 1 {
            revocations.revoke(None, Some(&format!("apit_{i}")));
        }
        assert!(revocations.len() < PRUNE_THRESHOLD);
        assert_eq!(
            revocations.vet(Fingerprint::of("k"), "apit_x", 1),
            Verdict::Unverifiable
        );
    }
}
