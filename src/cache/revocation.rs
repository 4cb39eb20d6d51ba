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
//! since been forgotten): those are dropped and validated again.
//!
//! # Bounded
//!
//! Tombstones are bounded in number and in time, whoever publishes revocations:
//!
//! - **Capacity.** At most `capacity` names (a revocation tombstones one or two: the
//!   fingerprint, the token id) are kept; token ids are kept as keyed 128-bit hashes, so each
//!   name costs the same (about 100 bytes) however long the id. Revoking a name already
//!   tombstoned adds nothing and does not move the epoch.
//! - **Time.** A tombstone is forgotten once older than the retention (longer than any entry
//!   vetted before it can live): checked on every revocation and, when the oldest is due, on
//!   reads; amortised O(1), oldest first.
//! - **Revoke still wins when full.** The oldest tombstone is forgotten, never silently: the
//!   "lost" floor is raised past it, so every entry vetted before it can no longer be vetted
//!   (it is dropped and asked upstream again), and a validation in flight since before it
//!   cannot be used at all ([`Verdict::Forgotten`]). A flood of revocations beyond the
//!   capacity thus costs cache hits (and upstream calls), never a revoked key's acceptance by
//!   this cache while its tombstone, or an entry it guarded, could matter.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::entry::{CacheKey, PrefixHasherBuilder};
use crate::request::key::Fingerprint;

/// Fewest tombstones a cache keeps (when derived from a small capacity).
pub(super) const MIN_TOMBSTONES: usize = 1024;
/// Most tombstones a derived bound asks for (about 100 MB); an explicit setting may go higher.
pub(super) const MAX_DERIVED_TOMBSTONES: usize = 1 << 20;

pub(super) struct Revocations {
    /// Bumped (under the write lock) by every revocation that adds a tombstone, and by flushes.
    epoch: AtomicU64,
    tombstones: RwLock<Tombstones>,
    /// How long a tombstone is kept: longer than any entry vetted before it can live.
    retention: Duration,
    /// Most names kept at once.
    capacity: usize,
    /// Tombstones forgotten before their retention because the capacity was reached.
    evicted: AtomicU64,
}

struct Tombstones {
    /// Revoked fingerprints, with the epoch of their revocation.
    by_fingerprint: HashMap<CacheKey, u64, PrefixHasherBuilder>,
    /// Revoked token ids, by their keyed hash ([`Fingerprint::of`] the id).
    by_token_id: HashMap<CacheKey, u64, PrefixHasherBuilder>,
    /// Every tombstone of the two maps, oldest first: what to forget next.
    order: VecDeque<Stone>,
    /// Entries vetted before this epoch were flushed: ask the upstream again.
    floor: u64,
    /// Entries vetted (and validations started) before this epoch may have missed a tombstone
    /// that is gone now.
    lost: u64,
}

#[derive(Clone, Copy)]
struct Stone {
    name: CacheKey,
    by_token_id: bool,
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
    /// Cannot tell (a flush since `since`): ask the upstream again. An upstream answer fetched
    /// across the flush may still be served once.
    Unverifiable,
    /// Cannot tell, and a revocation may have been missed (a tombstone forgotten since
    /// `since`): ask the upstream again, and do not serve an answer fetched across it.
    Forgotten,
}

impl Revocations {
    /// Tombstones kept `retention`, at most `capacity` names (at least 1).
    pub(super) fn new(retention: Duration, capacity: usize) -> Self {
        Self {
            epoch: AtomicU64::new(0),
            tombstones: RwLock::new(Tombstones {
                by_fingerprint: HashMap::default(),
                by_token_id: HashMap::default(),
                order: VecDeque::new(),
                floor: 0,
                lost: 0,
            }),
            retention,
            capacity: capacity.max(1),
            evicted: AtomicU64::new(0),
        }
    }

    /// The bound derived from a cache's capacity: a tombstone for every fresh and every stale
    /// entry, within [`MIN_TOMBSTONES`]..=[`MAX_DERIVED_TOMBSTONES`].
    pub(super) fn derived_capacity(cache_capacity: u64) -> usize {
        usize::try_from(cache_capacity.saturating_mul(2))
            .unwrap_or(usize::MAX)
            .clamp(MIN_TOMBSTONES, MAX_DERIVED_TOMBSTONES)
    }

    /// The current epoch: the hit path's only contact with this type.
    #[inline]
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Records a revocation. Once this returns, no validation, in flight or not, can make this
    /// instance accept the key.
    pub(super) fn revoke(&self, fingerprint: Option<Fingerprint>, token_id: Option<&str>) {
        let token_id = token_id.map(|id| CacheKey(Fingerprint::of(id)));
        let mut tombstones = self.write();
        let now = Instant::now();
        tombstones.forget_expired(now, self.retention);
        let epoch = self.epoch.load(Ordering::Relaxed) + 1;
        let names = fingerprint
            .map(|fingerprint| (CacheKey(fingerprint), false))
            .into_iter()
            .chain(token_id.map(|id| (id, true)));
        let mut added = false;
        for (name, by_token_id) in names {
            let map = if by_token_id {
                &mut tombstones.by_token_id
            } else {
                &mut tombstones.by_fingerprint
            };
            // Revocation is final: the first tombstone of a name stands, a repeat adds nothing.
            if map.contains_key(&name) {
                continue;
            }
            map.insert(name, epoch);
            tombstones.order.push_back(Stone {
                name,
                by_token_id,
                epoch,
                at: now,
            });
            added = true;
        }
        if !added {
            return;
        }
        while tombstones.order.len() > self.capacity {
            tombstones.forget_oldest();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        // Published last, under the lock: whoever sees the new epoch sees the tombstone.
        self.epoch.store(epoch, Ordering::Release);
    }

    /// Marks every entry vetted so far as unverifiable (after a gap in the revocation feed).
    pub(super) fn flush(&self) {
        let mut tombstones = self.write();
        tombstones.forget_expired(Instant::now(), self.retention);
        let epoch = self.epoch.load(Ordering::Relaxed) + 1;
        tombstones.floor = epoch;
        self.epoch.store(epoch, Ordering::Release);
    }

    /// Looks for a tombstone of either name of the key, for an answer or entry vetted up to
    /// `since`.
    pub(super) fn vet(&self, fingerprint: Fingerprint, token_id: &str, since: u64) -> Verdict {
        let id = CacheKey(Fingerprint::of(token_id));
        let (verdict, due) = {
            let tombstones = self
                .tombstones
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            // Revocation is final (a key is never un-revoked), so any tombstone wins, not only
            // those newer than `since`.
            let verdict = if tombstones
                .by_fingerprint
                .contains_key(&CacheKey(fingerprint))
                || tombstones.by_token_id.contains_key(&id)
            {
                Verdict::Revoked
            } else if since < tombstones.lost {
                Verdict::Forgotten
            } else if since < tombstones.floor {
                Verdict::Unverifiable
            } else {
                Verdict::Clear(self.epoch.load(Ordering::Acquire))
            };
            let due = tombstones
                .order
                .front()
                .is_some_and(|oldest| oldest.at.elapsed() >= self.retention);
            (verdict, due)
        };
        // Housekeeping on read, when the oldest tombstone is due and nobody holds the lock.
        if due && let Ok(mut tombstones) = self.tombstones.try_write() {
            tombstones.forget_expired(Instant::now(), self.retention);
        }
        verdict
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

    /// How many names are tombstoned now, and how many were forgotten early because the
    /// capacity was reached.
    pub(super) fn counts(&self) -> (u64, u64) {
        let len = self
            .tombstones
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .order
            .len();
        (
            u64::try_from(len).unwrap_or(u64::MAX),
            self.evicted.load(Ordering::Relaxed),
        )
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tombstones> {
        self.tombstones
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Tombstones {
    /// Forgets the tombstones older than `retention`, oldest first: each revocation pays for
    /// at most the ones it pushed, so the cost is amortised O(1).
    fn forget_expired(&mut self, now: Instant, retention: Duration) {
        while self
            .order
            .front()
            .is_some_and(|oldest| now.saturating_duration_since(oldest.at) >= retention)
        {
            self.forget_oldest();
        }
    }

    /// Forgets the oldest tombstone and raises the lost floor past it: whatever was vetted
    /// before it can no longer be vetted.
    fn forget_oldest(&mut self) {
        let Some(stone) = self.order.pop_front() else {
            return;
        };
        let map = if stone.by_token_id {
            &mut self.by_token_id
        } else {
            &mut self.by_fingerprint
        };
        map.remove(&stone.name);
        self.lost = self.lost.max(stone.epoch);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        debug_assert_eq!(
            self.order.len(),
            self.by_fingerprint.len() + self.by_token_id.len()
        );
        self.order.len()
    }
}

#[cfg(test)]
mod tests;
