//! What the caches hold, how they hash it, and how long each entry may live.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use time::OffsetDateTime;

use crate::request::key::Fingerprint;
use crate::token_info::Authenticated;

/// The cache key: a [`Fingerprint`], hashed by its first 64 bits.
///
/// The fingerprint is already a keyed, uniformly distributed hash, so running it through
/// SipHash again would buy nothing but cost on every hit; and an attacker cannot aim keys at one
/// bucket without the process's fingerprint key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct CacheKey(pub(super) Fingerprint);

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.prefix_u64());
    }
}

/// Builds [`PrefixHasher`]s: the `BuildHasher` of every fingerprint-keyed map in the cache.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PrefixHasherBuilder;

impl BuildHasher for PrefixHasherBuilder {
    type Hasher = PrefixHasher;

    fn build_hasher(&self) -> PrefixHasher {
        PrefixHasher(0)
    }
}

/// Passes a [`CacheKey`]'s 64-bit prefix through unchanged.
///
/// Only `CacheKey` is ever hashed with it (it calls `write_u64` once); `write` still mixes
/// arbitrary bytes (FNV-1a) so the hasher stays correct for any other use.
pub(super) struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const FNV_PRIME: u64 = 0x0100_0000_01b3;
        let mut hash = self.0 ^ 0xcbf2_9ce4_8422_2325;
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME);
        }
        self.0 = hash;
    }

    fn write_u64(&mut self, value: u64) {
        self.0 ^= value;
    }
}

/// A positive answer, shared (behind an `Arc`) by the fresh cache and the stale record.
pub(super) struct Entry {
    /// Returned as is on a hit: cloning it is one `Arc` increment.
    pub(super) auth: Authenticated,
    /// When the upstream said yes.
    pub(super) validated_at: Instant,
    /// How long the answer is served without asking again: `min(ttl, expiry - now)`.
    pub(super) fresh_for: Duration,
    /// `validated_at + fresh_for` on quanta's TSC clock, for the hit path's freshness check: a
    /// few nanoseconds a read, against tens for the OS clock. Past its range, not fresh.
    pub(super) fresh_until: quanta::Instant,
    /// How long it may back a degraded answer: `min(ttl + stale window, expiry - now)`.
    pub(super) keep_for: Duration,
    /// The key's effective expiry, read once (a rotated key's deadline lives in a claim).
    pub(super) expires: Option<OffsetDateTime>,
    /// The revocation epoch up to which this entry is known not to be revoked. A hit compares
    /// it with the current epoch and looks at the tombstones only when they differ.
    pub(super) vetted_epoch: AtomicU64,
}

impl Entry {
    /// Builds the entry for a fresh upstream answer, or `None` when the key has already
    /// expired (such an answer must not be cached, nor accepted).
    pub(super) fn new(
        auth: Authenticated,
        ttl: Duration,
        stale_window: Duration,
        vetted_epoch: u64,
    ) -> Option<Self> {
        // The effective expiry: a rotated key's grace deadline ends its entries too.
        let expires = auth.info().effective_expiry();
        let left = time_left(expires, OffsetDateTime::now_utc())?;
        let fresh_for = ttl.min(left);
        let tsc_now = quanta::Instant::now();
        Some(Self {
            expires,
            auth,
            validated_at: Instant::now(),
            fresh_for,
            fresh_until: tsc_now.checked_add(fresh_for).unwrap_or(tsc_now),
            keep_for: ttl.saturating_add(stale_window).min(left),
            vetted_epoch: AtomicU64::new(vetted_epoch),
        })
    }

    /// `true` when the key's own expiry has passed (wall clock, as the upstream judges it).
    /// Cheap when the key does not expire: no clock is read.
    pub(super) fn key_expired(&self) -> bool {
        self.expires
            .is_some_and(|expiry| expiry <= OffsetDateTime::now_utc())
    }
}

/// How long the key has left, `Some(Duration::MAX)` when it does not expire, `None` when it
/// has expired.
fn time_left(expires: Option<OffsetDateTime>, now: OffsetDateTime) -> Option<Duration> {
    match expires {
        None => Some(Duration::MAX),
        Some(expiry) if expiry > now => Duration::try_from(expiry - now).ok(),
        Some(_) => None,
    }
}

/// moka's per-entry lifetime for the fresh cache: [`Entry::fresh_for`].
pub(super) struct FreshLifetime;

impl<K> Expiry<K, std::sync::Arc<Entry>> for FreshLifetime {
    fn expire_after_create(
        &self,
        _key: &K,
        entry: &std::sync::Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.fresh_for)
    }
}

/// moka's per-entry lifetime for the stale records: [`Entry::keep_for`].
pub(super) struct KeepLifetime;

impl<K> Expiry<K, std::sync::Arc<Entry>> for KeepLifetime {
    fn expire_after_create(
        &self,
        _key: &K,
        entry: &std::sync::Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.keep_for)
    }
}

impl Entry {
    /// Records that the entry was found clear of tombstones up to `epoch`.
    pub(super) fn vetted_up_to(&self, epoch: u64) {
        self.vetted_epoch.fetch_max(epoch, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token_info::TokenInfo;

    fn auth_expiring_in(seconds: i64) -> Authenticated {
        TokenInfo::builder("key_1", "org_1")
            .expiry(OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
            .build()
            .into()
    }

    #[test]
    fn lifetimes_are_clamped_to_the_key_expiry() {
        let entry = Entry::new(
            auth_expiring_in(2),
            Duration::from_secs(60),
            Duration::from_secs(600),
            0,
        )
        .unwrap();
        assert!(entry.fresh_for <= Duration::from_secs(2));
        assert!(entry.keep_for <= Duration::from_secs(2));
    }

    #[test]
    fn expired_answers_make_no_entry() {
        assert!(
            Entry::new(
                auth_expiring_in(-1),
                Duration::from_secs(60),
                Duration::ZERO,
                0
            )
            .is_none()
        );
    }

    #[test]
    fn keys_without_expiry_live_ttl_plus_window() {
        let auth = TokenInfo::builder("key_1", "org_1").build().into();
        let entry = Entry::new(auth, Duration::from_secs(30), Duration::from_secs(300), 0).unwrap();
        assert_eq!(entry.fresh_for, Duration::from_secs(30));
        assert_eq!(entry.keep_for, Duration::from_secs(330));
    }

    #[test]
    fn cache_keys_hash_to_their_prefix() {
        let fingerprint = Fingerprint::of("some key");
        assert_eq!(
            PrefixHasherBuilder.hash_one(CacheKey(fingerprint)),
            fingerprint.prefix_u64()
        );
    }
}
